"""Every speed ratio of docs/performance.md in one command, with the device it ran on.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/run_all.py [--device cpu|cuda] [--quick]

Sections (paired rounds, order rotated every round, ratio of medians):

1. planning: ``sampling.plan()`` for a 1024x1024 diagonal ramp (128x128 latent) in every mode at
   8/30/50/150 steps, milliseconds (host work; the goal is stated in ms),
   and ``denoise`` mode with every ComfyUI scheduler at 150 steps;
2. sampling, per model: KSampler, the built-in DifferentialDiffusion + SetLatentNoiseMask path and
   the Differential KSampler in each mode (euler/normal, cfg 5, diagonal ramp), also with skipping
   off (the same model calls in every mode); then a map whose largest value is g = 0.5 against
   KSampler(denoise = 0.5) and against the same run unskipped;
3. Strength Fan (5 strengths in one batch) against KSampler on the same batch;
4. DiffEdit Mask (n = 10) against KSampler's same evaluations (n steps at cfg 7) and against 2n
   single evaluations;
5. device -> host synchronisations (``sync_check.py``): none in the per-step code (strict CUDA sync
   mode on a GPU), and what whole runs add to KSampler's at 10 and 20 steps.

Models: ``--device cpu`` a near-free model (64x64 latent, 30 steps) and the tiny SD1.5-shaped UNet
(32x32 latent, 20 steps); ``--device cuda`` random-weight fp16 UNets of the real SD1.5 (512x512) and
SDXL (1024x1024) layouts, 30 steps. ``--quick`` fits a 6-minute device window.
"""

from __future__ import annotations

import argparse
import functools

import common

print = functools.partial(print, flush=True)   # noqa: A001  progress shows when the output goes to a file


def planning(env, quick: bool, reference: bool):
    sampling = env.module("nodes.plan")
    maps_core = env.module("nodes.core.maps")
    model = common.near_free_model()
    cmap = common.ramp(1024)
    shape = (1, 4, 128, 128)

    def plan(mode, steps, scheduler="normal"):   # a new ChangeMap each time: its memo would answer a repeat
        return lambda: sampling.ChangeMap(maps=cmap, mode=mode).plan(
            model, sampling.PlanKey.for_ksampler(model, shape, steps, "euler", scheduler))

    def before(mode, steps):   # the same work with ComfyUI's schedule per distinct total (the previous implementation)
        def run():
            full = sampling.ksampler_sigmas(model, steps, "euler", "normal", 1.0, device="cpu")
            g = maps_core.maps_for_latent(cmap, shape, "change_map")
            return sampling.start_steps(mode, g, full, model, sampling.Reference("euler", "normal", 1.0),
                                        closed_form_levels=False)
        return run

    print("\n== planning: ChangeMap.plan(), 1024x1024 diagonal ramp (128x128 latent), euler/normal, median ms")
    steps_list = (8, 30, 150) if quick else (8, 30, 50, 150)
    print("  steps " + "".join(f"{m:>12}" for m in ("step", "denoise", "timestep"))
          + ("   denoise before (ComfyUI per total)  before/after" if reference else ""))
    for steps in steps_list:
        row, extra = [], ""
        for mode in ("step", "denoise", "timestep"):
            variants = {"after": plan(mode, steps)}
            if reference and mode == "denoise" and steps <= 50:   # 150 steps the old way: minutes
                variants["before"] = before(mode, steps)
            times = common.paired(variants, 3 if quick or "before" in variants else 7)
            row.append(common.median(times["after"]) * 1000)
            if "before" in variants:
                b = common.median(times["before"]) * 1000
                extra = f"   {b:>14.1f}ms {b / row[-1]:>22.0f}x"
        print(f"  {steps:>5} " + "".join(f"{v:>10.1f}ms" for v in row) + extra)
    import comfy.samplers

    schedulers = comfy.samplers.KSampler.SCHEDULERS
    print("  denoise mode, every ComfyUI scheduler, 150 steps, median ms")
    row = []
    for scheduler in schedulers:
        times = common.paired({"p": plan("denoise", 150, scheduler)}, 3 if quick else 7)
        row.append(common.median(times["p"]) * 1000)
    print("  " + "".join(f"{s:>17}" for s in schedulers))
    print("  " + "".join(f"{v:>15.1f}ms" for v in row))
    node = env.node("DDE_SchedulePreview")
    print("  Change Map Schedule Preview node (in-process: plan + picture + PNG), 1024x1024 ramp, 50 steps, median ms")
    for scheduler in ("normal", "sgm_uniform", "karras"):
        row = []
        for mode in ("step", "denoise", "timestep"):
            times = common.paired({"p": lambda: node.execute(model, cmap, 50, "euler", scheduler, 1.0, mode, False)}, 3)
            row.append(common.median(times["p"]) * 1000)
        print(f"  {scheduler:>11} " + "".join(f"{v:>10.1f}ms" for v in row))


def _models(device: str, quick: bool):
    from dde_world.tiny import unet_model

    if device == "cuda":
        return [("SD1.5 layout, 512x512", lambda: common.real_layout_unet("sd15"), "sd15", 64, 30),
                ("SDXL layout, 1024x1024", lambda: common.real_layout_unet("sdxl"), "sdxl", 128, 30)]
    return [("near-free model, 64x64 latent", common.near_free_model, "sd15", 64, 30),
            ("tiny SD1.5-shaped UNet, 32x32 latent", lambda: unet_model(), "sd15", 32, 10 if quick else 20)]


def _unskipped(model):
    m = model.clone()
    m.set_model_denoise_mask_function(lambda sigma, mask, extra_options: mask)
    return m


def sampling_section(env, name, make, kind, size, steps, repeats):
    import torch

    import nodes

    model = make()
    cond, neg = common.conditioning(kind, 1), common.conditioning(kind, 2)
    torch.manual_seed(0)
    latent = {"samples": torch.randn(1, 4, size, size)}
    cmap = common.ramp(size * 8)
    half = cmap * 0.5
    dk = env.node("DDE_DifferentialKSampler")
    builtin = nodes.NODE_CLASS_MAPPINGS["DifferentialDiffusion"]
    args = (0, steps, 5.0, "euler", "normal", cond, neg)

    def pack(mode, m=model, cmap=cmap):
        return lambda: dk.execute(m, *args, latent, 1.0, cmap, mode, False, 1.0, 0.0)

    def builtin_path():
        dd = builtin.execute(model)[0]
        masked = nodes.SetLatentNoiseMask().set_mask(latent, cmap)[0]
        return nodes.KSampler().sample(dd, *args, masked)

    variants = {
        "KSampler": lambda: nodes.KSampler().sample(model, *args, latent),
        "built-in DD path": builtin_path,
        "pack, step mode": pack("step"),
        "pack, denoise mode": pack("denoise"),
        "pack, timestep mode": pack("timestep"),
        "pack, step mode unskipped": pack("step", m=_unskipped(model)),
        "pack, denoise mode unskipped": pack("denoise", m=_unskipped(model)),
        "KSampler(denoise=0.5)": lambda: nodes.KSampler().sample(model, *args, latent, denoise=0.5),
        "pack, map max 0.5 (skipping)": pack("denoise", cmap=half),
        "pack, map max 0.5 unskipped": pack("denoise", m=_unskipped(model), cmap=half),
    }
    with torch.inference_mode():
        times = common.paired(variants, repeats)
        peak = {n: common.peak_memory(variants[n]) for n in ("KSampler", "pack, step mode")}
    med = {n: common.median(t) for n, t in times.items()}
    ks, bi = med["KSampler"], med["built-in DD path"]
    print(f"\n== {name}, {steps} steps euler/normal, cfg 5, diagonal ramp, {repeats} paired rounds on {common.device_name()}")
    for n, t in med.items():
        print(f"  {n:<32} median {t * 1000:9.1f} ms")
    print(f"  built-in / KSampler                {bi / ks:.3f}  (adds {(bi - ks) * 1000:+.1f} ms)")
    for mode in ("step", "denoise", "timestep"):
        t = med[f"pack, {mode} mode"]
        print(f"  pack {mode:<8} / KSampler          {t / ks:.3f}  (adds {(t - ks) * 1000:+.1f} ms; "
              f"/ built-in {t / bi:.3f}; / step mode {t / med['pack, step mode']:.3f})")
    print(f"  pack denoise / step, both unskipped  {med['pack, denoise mode unskipped'] / med['pack, step mode unskipped']:.3f}"
          "  (same model calls: on a ramp denoise mode frees a 0.99 cell at step 0, step mode at step 1)")
    sk = med["pack, map max 0.5 (skipping)"]
    print(f"  skipping run / KSampler(denoise=0.5)  {sk / med['KSampler(denoise=0.5)']:.3f}")
    print(f"  skipping run / same run unskipped     {sk / med['pack, map max 0.5 unskipped']:.3f}")
    (grow_ks, abs_ks), (grow_pack, abs_pack) = peak["KSampler"], peak["pack, step mode"]
    print(f"  peak memory pack / KSampler           {abs_pack / max(abs_ks, 1):.3f} (absolute, model included); "
          f"growth during the run {grow_pack / 2 ** 20:.1f} MiB vs {grow_ks / 2 ** 20:.1f} MiB")
    return model, cond, neg, latent


def fan_section(env, model, cond, neg, latent, steps, repeats, k=5):
    import torch

    import nodes

    plan = env.module("nodes.plan")
    values = torch.linspace(0.2, 1.0, k)
    batch = {"samples": latent["samples"].repeat(k, 1, 1, 1), "batch_index": [0] * k}

    def fan():   # the Strength Fan's sampling (as the node does it, without decoding)
        cmap = plan.ChangeMap(maps=values.view(k, 1, 1), mode="step", node="Strength Fan", input_name="strengths")
        key = plan.PlanKey.for_ksampler(model, batch["samples"].shape, steps, "euler", "normal")
        return env.module("nodes.differential_sampling").differential_sample(model, 0, 5.0, cond, neg, batch, cmap, key)

    def ksampler():
        return nodes.KSampler().sample(model, 0, steps, 5.0, "euler", "normal", cond, neg, batch)

    with torch.inference_mode():
        times = common.paired({"Strength Fan": fan, "KSampler": ksampler}, repeats)
    med = {n: common.median(t) for n, t in times.items()}
    print(f"\n== Strength Fan, {k} strengths 0.2..1 in one batch (latents only), {steps} steps")
    print(f"  Strength Fan / KSampler on the same batch   {med['Strength Fan'] / med['KSampler']:.3f}")


def diffedit_section(env, model, cond, neg, latent, repeats, n=10):
    import torch

    import nodes

    de = env.module("nodes.diffedit_sampling")
    mask_node = env.node("DDE_DiffEditMask")
    lat = latent["samples"]

    def ours():
        return mask_node.execute(model, cond, {"samples": lat}, 0.5, n, 0, 1.0, "rescale", 0.5, 3.0, 0.8, 0.0, 0, 0, neg)

    def ksampler():
        return nodes.KSampler().sample(model, 0, n, 7.0, "euler", "normal", cond, neg, {"samples": lat})

    def singles():
        common.single_evaluations(model, cond, neg, lat, n, de.noise_level(model, 0.5))

    with torch.inference_mode():
        times = common.paired({"DiffEdit Mask": ours, "KSampler n steps cfg 7": ksampler, "2n single evaluations": singles},
                              repeats)
    med = {k: common.median(v) for k, v in times.items()}
    print(f"\n== DiffEdit Mask, n = {n} (auto batch)")
    print(f"  DiffEdit Mask / KSampler({n} steps, cfg 7)   {med['DiffEdit Mask'] / med['KSampler n steps cfg 7']:.3f}")
    print(f"  DiffEdit Mask / 2n single evaluations       {med['DiffEdit Mask'] / med['2n single evaluations']:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_device_argument(p)
    p.add_argument("--quick", action="store_true", help="fewer rounds (fits a 6-minute device window)")
    p.add_argument("--repeats", type=int, default=None, help="paired rounds (default 3 quick, 9 otherwise)")
    p.add_argument("--skip-planning", action="store_true")
    p.add_argument("--planning-before", action="store_true",
                   help="also time denoise-mode planning the previous way (ComfyUI's schedule per total; slow)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (0: torch's default); 1 avoids thread hand-off stalls on a busy shared CPU")
    a = p.parse_args()
    env = common.comfy(a.device)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    repeats = a.repeats or (3 if a.quick else 9)
    print(f"device: {common.device_name()}" + (f", {a.threads} torch thread(s)" if a.threads else ""))
    if not a.skip_planning:
        planning(env, a.quick, a.planning_before)
    last = None
    for name, make, kind, size, steps in _models(a.device, a.quick):
        model, cond, neg, latent = sampling_section(env, name, make, kind, size, steps, repeats)
        last = (model, cond, neg, latent, steps)
    model, cond, neg, latent, steps = last
    fan_section(env, model, cond, neg, latent, steps, repeats)
    diffedit_section(env, model, cond, neg, latent, repeats)
    import sync_check

    print()
    if not sync_check.check(env):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
