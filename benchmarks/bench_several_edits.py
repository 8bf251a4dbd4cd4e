"""Several edits at once: k masks from one estimation (DiffEdit Masks) vs k separate DiffEdit Mask runs.

Paired rounds, order rotated every round: (a) DiffEdit Masks (several edits) with k Edit Concepts, (b) k DiffEdit
Mask runs of the same (query, reference) pairs, same n, seed and batch_size. Prints the ratio of medians (a / b),
the model calls and evaluations of each, and peak memory. ``--reference shared`` (default): the k concepts share
one reference (what the picture shows; one CLIP Text Encode linked to every concept), so the estimation evaluates
it once per draw; ``distinct``: each concept has its own reference (only the batching differs).

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_several_edits.py [--k 2 3] [--model tiny|full]
        [--reference shared|distinct|both] [--batch-size N] [--threads 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import common
from bench_diffedit import CallCounter


class EvaluationCounter(CallCounter):
    """Forwards and the evaluations (batch rows, in latent batches of one) they carry."""

    def __init__(self, model):
        self.evaluations = 0
        super().__init__(model)

    def _wrap(self, executor, *args, **kwargs):
        self.evaluations += int(args[0].shape[0])
        return super()._wrap(executor, *args, **kwargs)


def run(kind: str, ks: list[int], reference: str, n: int, repeats: int, size: int, batch_size: int, device: str):
    env = common.comfy(device)
    import torch

    from dde_world.tiny import unet_model

    model = common.real_layout_unet("sd15") if device == "cuda" and kind == "full" else unet_model(
        full=kind == "full", dtype=common.dtype())
    counter = EvaluationCounter(model)
    latent = {"samples": torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(0))}
    masks_node, mask_node = env.node("DDE_DiffEditMasks"), env.node("DDE_DiffEditMask")
    chain_of = env.module("nodes.several_edits").chain
    settings = (0.5, n, 0, 1.0, "rescale", 0.5, 3.0, 0.8, 0.0, 0, batch_size)
    print(f"\n== {kind} SD1.5 UNet, latent {size}x{size}, n = {n}, batch_size = {batch_size or 'auto'}, "
          f"{reference} reference, {repeats} paired rounds on {common.device_name()}")
    for k in ks:
        queries = [common.conditioning("sd15", 10 + i) for i in range(k)]
        shared = common.conditioning("sd15", 99)
        references = [shared] * k if reference == "shared" else [common.conditioning("sd15", 50 + i) for i in range(k)]
        chain = None
        for q, r in zip(queries, references):
            chain = chain_of(chain, q, r)

        def one():
            return masks_node.execute(counter.model, chain, latent, *settings)

        def separate():
            return [mask_node.execute(counter.model, q, latent, *settings, r) for q, r in zip(queries, references)]

        with torch.inference_mode():
            names = {f"one estimation, k={k}": one, f"{k} DiffEdit Mask runs": separate}
            times = common.paired(names, repeats)
            cost = {}
            for name, fn in names.items():
                counter.calls = counter.evaluations = 0
                fn()
                cost[name] = (counter.calls, counter.evaluations)
            mem = {name: common.peak_memory(fn) for name, fn in names.items()}
        med = {name: common.median(v) for name, v in times.items()}
        for name in names:
            print(f"  {name:<24} median {med[name]:7.3f} s  model calls {cost[name][0]:4d}, evaluations "
                  f"{cost[name][1]:4d}  peak +{mem[name][0] / 2**20:7.1f} MiB")
        a, b = names
        print(f"  ratio one estimation / {k} runs  {med[a] / med[b]:.3f}   (evaluations {cost[a][1] / cost[b][1]:.3f})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "full"], default="tiny")
    p.add_argument("--k", type=int, nargs="+", default=[2, 3])
    p.add_argument("--reference", choices=["shared", "distinct", "both"], default="both")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--repeats", type=int, default=None, help="paired rounds (default: 5 tiny, 3 full)")
    p.add_argument("--size", type=int, default=32, help="latent side")
    p.add_argument("--batch-size", type=int, default=0, help="the nodes' batch_size (0 = auto)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 avoids thread hand-off stalls on a busy shared CPU")
    common.add_device_argument(p)
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    for reference in (["shared", "distinct"] if a.reference == "both" else [a.reference]):
        run(a.model, a.k, reference, a.n, a.repeats or (5 if a.model == "tiny" else 3), a.size, a.batch_size, a.device)


if __name__ == "__main__":
    main()
