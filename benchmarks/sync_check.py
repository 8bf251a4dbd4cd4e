"""Device -> host synchronisations: none in the pack's per-step code, and what a whole run adds to KSampler's.

1. **Per step.** The pack's per-step functions (the step mask, the denoise-mask function, the inpaint concat
   and per-token masks; near-free plain, inpainting and per-token models, so each of them runs) run under ``torch.cuda.set_sync_debug_mode("error")`` on a GPU — any
   synchronising call raises — and, on any device, under a dispatch recorder that counts tensor -> Python
   scalar reads (``.item()``, ``float(t)``, ``bool(t)``: each a sync on a GPU). Both must stay at 0.
2. **Per run.** Whole runs of KSampler and of the Differential KSampler in each mode at 10 and 20 steps:
   the syncs CUDA reports (``set_sync_debug_mode("warn")``, on a GPU) and the scalar reads. What the pack
   adds must not grow with the steps.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/sync_check.py [--device cpu|cuda]

Exits 1 when a check fails. The instrumentation (wrapping the pack's per-step functions) lives in this
script only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

import common
from dde_world.probes import SCALAR_READS

PER_STEP = ("_step_mask_rows", "_dynamic_concat", "_step_denoise_mask")


class Reads:
    """Counts tensor -> Python scalar reads while active (a TorchDispatchMode)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if str(func) in SCALAR_READS:
                    counter.count += 1
                return func(*args, **(kwargs or {}))

        self.count = 0
        self.mode = Mode

    def __enter__(self):
        self._active = self.mode()
        self._active.__enter__()
        return self

    def __exit__(self, *exc):
        return self._active.__exit__(*exc)


@contextlib.contextmanager
def cuda_sync_mode(mode: str):
    import torch

    if common.DEVICE != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def instrument_per_step(hooks, schedule):
    """Wrap the pack's per-step functions: strict sync mode on a GPU, scalar reads counted everywhere."""
    seen = {"calls": {}, "reads": 0}

    def strict(name, fn):
        def inner(*args, **kwargs):
            seen["calls"][name] = seen["calls"].get(name, 0) + 1
            with cuda_sync_mode("error"), Reads() as r:
                out = fn(*args, **kwargs)
            seen["reads"] += r.count
            return out
        return inner

    originals = {name: getattr(hooks, name) for name in (*PER_STEP, "_mask_function")}
    mask = schedule.DifferentialRun.mask
    for name in PER_STEP:
        setattr(hooks, name, strict(name, originals[name]))
    schedule.DifferentialRun.mask = strict("DifferentialRun.mask", mask)
    hooks._mask_function = lambda run, previous: strict("mask_function", originals["_mask_function"](run, previous))

    def undo():
        for name, fn in originals.items():
            setattr(hooks, name, fn)
        schedule.DifferentialRun.mask = mask

    return seen, undo


def whole_run(fn) -> tuple[int, int]:
    """(CUDA-reported syncs or -1 off a GPU, scalar reads) of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cuda_sync_mode("warn"), Reads() as r:
            fn()
        common.sync()
    syncs = sum("synchroniz" in str(w.message) for w in caught) if common.DEVICE == "cuda" else -1
    return syncs, r.count


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_device_argument(p)
    a = p.parse_args()
    env = common.comfy(a.device)
    ok = check(env)
    sys.exit(0 if ok else 1)


def check(env) -> bool:
    import torch

    import nodes

    hooks = env.module("nodes.hooks")
    schedule = env.module("nodes.core.schedule")
    model = common.near_free_model()
    cond, neg = common.conditioning("sd15", 1), common.conditioning("sd15", 2)
    latent = {"samples": torch.randn(1, 4, 64, 64)}
    cmap = common.ramp(512)
    dk = env.node("DDE_DifferentialKSampler")

    def pack(mode, steps):
        return lambda: dk.execute(model, 0, steps, 5.0, "euler", "normal", cond, neg, latent, 1.0, cmap, mode, False, 1.0, 0.0)

    def ksampler(steps):
        return lambda: nodes.KSampler().sample(model, 0, steps, 5.0, "euler", "normal", cond, neg, latent)

    ok = True
    print(f"== device -> host synchronisations on {common.device_name()}")
    with torch.inference_mode():
        for mode in ("step", "denoise", "timestep"):
            pack(mode, 10)()   # warm-up: model load, first-call work
        rows = {}
        for steps in (10, 20):
            rows[("KSampler", steps)] = whole_run(ksampler(steps))
            for mode in ("step", "denoise", "timestep"):
                rows[(mode, steps)] = whole_run(pack(mode, steps))
        cuda = common.DEVICE == "cuda"
        print("  whole runs (CUDA syncs / scalar reads)" if cuda else "  whole runs (scalar reads; CUDA syncs need a GPU)")
        print("  run          10 steps   20 steps   added to KSampler at 10 / 20")
        for name in ("KSampler", "step", "denoise", "timestep"):
            cells = [rows[(name, s)] for s in (10, 20)]
            text = ["/".join(str(v) for v in (c if cuda else c[1:])) for c in cells]
            added = [tuple(c[i] - rows[("KSampler", s)][i] for i in range(2)) for c, s in zip(cells, (10, 20))]
            added_text = " / ".join("/".join(str(v) for v in (d if cuda else d[1:])) for d in added)
            print(f"  {name:<10} {text[0]:>10} {text[1]:>10}   {added_text}")
            if name != "KSampler" and added[0] != added[1]:
                print(f"  FAIL: {name} mode adds a different number at 20 steps than at 10 (a per-step read)")
                ok = False
        # the per-step code on three models: plain, inpainting (concat mask), told the denoise mask (per-token)
        models = {kind: common.near_free_model(kind) for kind in ("plain", "inpaint", "per_token")}
        for m in models.values():   # warm-up outside the strict mode (model load)
            dk.execute(m, 0, 4, 5.0, "euler", "normal", cond, neg, latent, 1.0, cmap, "step", False, 1.0, 0.0)
        seen, undo = instrument_per_step(hooks, schedule)
        errors = []
        try:
            for kind, m in models.items():
                for mode in ("step", "denoise", "timestep"):
                    try:
                        dk.execute(m, 0, 20, 5.0, "euler", "normal", cond, neg, latent, 1.0, cmap, mode, False, 1.0, 0.0)
                    except RuntimeError as e:   # strict CUDA sync mode raises on a synchronising call
                        errors.append(f"{kind}/{mode}: {e}")
        finally:
            undo()
    calls = ", ".join(f"{name} {n}" for name, n in sorted(seen["calls"].items()))
    print(f"  per-step code ({calls} calls): {seen['reads']} scalar reads"
          + ((", strict CUDA sync mode: " + ("no error" if not errors else "ERRORS " + "; ".join(errors)))
             if common.DEVICE == "cuda" else ""))
    missing = [name for name in (*PER_STEP, "DifferentialRun.mask", "mask_function") if not seen["calls"].get(name)]
    if missing or seen["reads"] or errors:
        print("  FAIL: the per-step code synchronised or read a value back to the host"
              + (f"; never ran: {', '.join(missing)}" if missing else ""))
        ok = False
    return ok


if __name__ == "__main__":
    main()
