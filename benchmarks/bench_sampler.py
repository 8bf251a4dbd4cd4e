"""Differential KSampler vs ComfyUI's KSampler and vs the built-in DifferentialDiffusion path.

Paired runs (same model, sampler, steps, seed, latent), order rotated every round; prints the
ratio of medians and the peak memory of each path. Goals: vs KSampler <= 1.02 on a
full-size SD1.5 UNet at a 32x32 latent, <= 1.05 on the tiny UNet; vs the built-in path <= 1.00;
peak memory <= +5 % of KSampler's.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_sampler.py [--model tiny|full|both]
    ... bench_sampler.py --device cuda --model sdxl --size 128 --steps 30     (a GPU: fp16 real layouts)
"""

from __future__ import annotations

import argparse

import common


def run(model_kind: str, steps: int, repeats: int, size: int, mode: str, device: str = "cpu"):
    env = common.comfy(device)
    import torch
    import nodes
    from dde_world.tiny import unet_model

    if model_kind in ("sd15", "sdxl"):
        model = common.real_layout_unet(model_kind)
        cond, neg = common.conditioning(model_kind, 1), common.conditioning(model_kind, 2)
    else:
        model = unet_model(full=model_kind == "full", dtype=common.dtype())
        torch.manual_seed(0)
        cond = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
        neg = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    latent = {"samples": torch.randn(1, 4, size, size)}
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size * 8), torch.linspace(0, 1, size * 8), indexing="ij")
    cmap = ((xx + yy) / 2).unsqueeze(0).contiguous()      # a diagonal gradient at picture resolution
    dk = env.node("DDE_DifferentialKSampler")
    builtin = nodes.NODE_CLASS_MAPPINGS["DifferentialDiffusion"]
    args = (0, steps, 5.0, "euler", "normal", cond, neg)

    def ksampler():
        return nodes.KSampler().sample(model, *args, latent)[0]

    def ours():
        return dk.execute(model, *args, latent, 1.0, cmap, mode, False, 1.0, 0.0)[0]

    def builtin_path():
        dd = builtin.execute(model)[0]
        masked = nodes.SetLatentNoiseMask().set_mask(latent, cmap)[0]
        return nodes.KSampler().sample(dd, *args, masked)[0]

    variants = {"KSampler": ksampler, "Differential KSampler": ours, "DifferentialDiffusion+SetLatentNoiseMask+KSampler": builtin_path}
    with torch.inference_mode():
        times = common.paired(variants, repeats)
        mem = {n: common.peak_memory(f) for n, f in variants.items()}
    med = {n: common.median(t) for n, t in times.items()}
    base, bi = med["KSampler"], med["DifferentialDiffusion+SetLatentNoiseMask+KSampler"]
    print(f"\n== {model_kind} SD1.5 UNet, latent {size}x{size}, {steps} steps euler/normal, cfg 5, mode {mode}, "
          f"{repeats} paired rounds on {common.device_name()}")
    for n in variants:
        print(f"  {n:<52} median {med[n]:.3f} s   peak +{mem[n][0] / 2**20:8.1f} MiB (abs {mem[n][1] / 2**20:8.1f} MiB)")
    ours_t = med["Differential KSampler"]
    print(f"  ratio Differential / KSampler          {ours_t / base:.3f}")
    print(f"  ratio Differential / built-in DD path  {ours_t / bi:.3f}")
    print(f"  peak memory Differential / KSampler    {mem['Differential KSampler'][1] / mem['KSampler'][1]:.3f} (absolute), "
          f"working set +{(mem['Differential KSampler'][0] - mem['KSampler'][0]) / 2**20:.1f} MiB")
    return ours_t / base, ours_t / bi


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "full", "both", "sd15", "sdxl"], default="both",
                   help="tiny / full: SD1.5 layouts in float32 on the CPU; sd15 / sdxl: random-weight real layouts "
                   "(use with --device cuda)")
    common.add_device_argument(p)
    p.add_argument("--steps", type=int, default=None, help="default: 20 tiny, 4 full")
    p.add_argument("--repeats", type=int, default=None, help="paired rounds (default: 15 tiny, 3 full)")
    p.add_argument("--size", type=int, default=32, help="latent side (picture side / 8)")
    p.add_argument("--mode", default="step", choices=["step", "denoise", "timestep"])
    a = p.parse_args()
    kinds = ["tiny", "full"] if a.model == "both" else [a.model]
    for kind in kinds:
        steps = a.steps or (20 if kind == "tiny" else 4)
        repeats = a.repeats or (15 if kind == "tiny" else 3)
        run(kind, steps, repeats, a.size, a.mode, a.device)


if __name__ == "__main__":
    main()
