"""Exactness figures of the family matrix (docs/families.md): tiny random-weight models of every family.

Per family (``tests/dde_world/families.py``; 3 steps, euler / normal, cfg 2, seed 3):
  map0   max |out - input| over the three modes and Apply Change Map + KSampler / SamplerCustomAdvanced
  map1   max |Differential KSampler (map 1) - KSampler| and max |Apply Change Map (map 1) + KSampler - KSampler|
  ramp   mean |change| at uniform maps 0.25, 0.5, 0.75 (denoise mode) relative to map 1's mean change
  diffedit  max |out - input| outside DiffEdit Edit's mask
Plus the inpainting models under InpaintModelConditioning (noise_mask off / on) and euler_ancestral.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/families_figures.py [family ...]
"""

from __future__ import annotations

import sys

import common

STEPS = 8


def main(names):
    env = common.comfy()
    import torch
    import nodes

    from dde_world import families as F

    torch.set_num_threads(1)
    m = nodes.NODE_CLASS_MAPPINGS
    dk, apply = env.node("DDE_DifferentialKSampler"), env.node("DDE_ApplyChangeMap")
    edit = env.node("DDE_DiffEditEdit")

    def cmap(f, v):
        return torch.full((1, 8 * f.latent.shape[-2], 8 * f.latent.shape[-1]), float(v))

    def run_dk(f, value, mode, latent=None, pos=None, neg=None, sampler="euler"):
        return dk.execute(f.model, 3, STEPS, 2.0, sampler, "normal", pos or f.positive, neg or f.negative,
                          latent or {"samples": f.latent}, 1.0, cmap(f, value), mode, False, 1.0, 0.0)[0]["samples"]

    def ks(model, f, latent=None, pos=None, neg=None, sampler="euler"):
        return nodes.KSampler().sample(model, 3, STEPS, 2.0, sampler, "normal", pos or f.positive, neg or f.negative,
                                       latent or {"samples": f.latent})[0]["samples"]

    def sca(model, f):
        guider = m["CFGGuider"].execute(model, f.positive, f.negative, 2.0)[0]
        sigmas = m["BasicScheduler"].execute(model, "normal", STEPS, 1.0)[0]
        return m["SamplerCustomAdvanced"].execute(m["RandomNoise"].execute(3)[0], guider, m["KSamplerSelect"].execute("euler")[0],
                                                  sigmas, {"samples": f.latent})[0]["samples"]

    print("| family | latent | params | map 0 max abs diff | map 1 vs KSampler | ramp 0.25 / 0.5 / 0.75 | DiffEdit outside |")
    print("|---|---|---|---|---|---|---|")
    with torch.inference_mode():
        for name in names:
            f = F.build(name)
            params = sum(p.numel() for p in f.model.model.diffusion_model.parameters())
            zero = [(run_dk(f, 0.0, mode) - f.latent).abs().max() for mode in ("step", "denoise", "timestep")]
            patched0 = apply.execute(f.model, cmap(f, 0.0), "step", False, 1.0, 0.0, "normal")[0]
            zero += [(ks(patched0, f) - f.latent).abs().max(), (sca(patched0, f) - f.latent).abs().max()]
            ref = ks(f.model, f)
            patched1 = apply.execute(f.model, cmap(f, 1.0), "denoise", False, 1.0, 0.0, "normal")[0]
            one = max(float((run_dk(f, 1.0, "step") - ref).abs().max()), float((ks(patched1, f) - ref).abs().max()))
            full = float((ref - f.latent).abs().mean())
            ramp = [float((run_dk(f, g, "denoise") - f.latent).abs().mean()) / full for g in (0.25, 0.5, 0.75)]
            mask = cmap(f, 0.0)
            mask[..., mask.shape[-1] // 2:] = 1.0
            out = edit.execute(f.model, f.positive, {"samples": f.latent}, mask, STEPS, 0.8, 2.0, "normal", 0, False,
                               f.negative, None)[0]["samples"]
            w = f.latent.shape[-1] // 2
            outside = float((out[..., :w] - f.latent[..., :w]).abs().max())
            print(f"| {name} | {tuple(f.latent.shape)} | {params / 1e6:.2f}M | {float(max(zero)):.3g} | {one:.3g} | "
                  f"{ramp[0]:.3f} / {ramp[1]:.3f} / {ramp[2]:.3f} | {outside:.3g} |")

        print("\n| inpainting model | noise_mask | sampler | map 1 vs KSampler (max abs diff, inside the mask) |")
        print("|---|---|---|---|")
        for name in ("sd15_inpaint", "flux_fill"):
            f = F.build(name)
            vae = F.vae(name)
            h, w = f.latent.shape[-2:]
            pixels = torch.rand(1, 8 * h, 8 * w, 3, generator=torch.Generator().manual_seed(5))
            mask = torch.zeros(1, 8 * h, 8 * w)
            mask[:, 16:48, 24:56] = 1.0
            for noise_mask in (False, True):
                pos, neg, latent = nodes.InpaintModelConditioning().encode(f.positive, f.negative, pixels, vae, mask, noise_mask)
                inside = torch.nn.functional.interpolate(mask[:, None], size=(h, w), mode="area") > 0.5
                for sampler in ("euler", "euler_ancestral"):
                    a = run_dk(f, 1.0, "step", latent, pos, neg, sampler)
                    b = ks(f.model, f, latent, pos, neg, sampler)
                    d = (a - b).abs()
                    d = d[inside.expand_as(d)] if noise_mask else d
                    print(f"| {name} | {noise_mask} | {sampler} | {float(d.max()):.3g} |")


if __name__ == "__main__":
    from dde_world.families import NAMES

    main(sys.argv[1:] or NAMES)
