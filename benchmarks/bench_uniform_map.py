"""How close a uniform map g (``denoise`` mode) comes to KSampler with ``denoise = g``.

Same seed, 20 euler/normal steps; on the analytic world (eps) and the tiny random SD1.5-shaped UNet. Prints the
mean change of each, and mean |ours - KSampler| relative to KSampler's mean change (the figures quoted in
docs/differential-diffusion.md). At g = 1 the two are identical by construction.

``COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_uniform_map.py``
"""

from __future__ import annotations

import tempfile

import common


def main():
    env = common.comfy()
    import torch

    import nodes
    from dde_world import comfy_world as cw
    from dde_world.analytic import AnalyticWorld
    from dde_world.tiny import write_tiny_models

    world = AnalyticWorld()
    models = tempfile.mkdtemp(prefix="dde_bench_")
    info = write_tiny_models(models)
    env.add_model_dir(models)
    dk = env.node("DDE_DifferentialKSampler")
    torch.manual_seed(0)
    with torch.inference_mode():
        tiny = nodes.UNETLoader().load_unet(info["unet"], "default")[0]
        tiny_cond = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
        cases = {"analytic world (eps)": (cw.make_model(world, "eps"), world.latent(0),
                                          cw.conditioning(world, world.graded_id(0)), cw.conditioning(world, None)),
                 "tiny random UNet": (tiny, torch.randn(1, 4, 8, 8), tiny_cond, tiny_cond)}
        print("device: CPU" if not torch.cuda.is_available() else f"device: {torch.cuda.get_device_name()}")
        for name, (model, src, pos, neg) in cases.items():
            print(f"\nuniform map g (denoise mode) vs KSampler denoise g, {name}, euler/normal, 20 steps:")
            for g in (0.3, 0.5, 0.7, 1.0):
                side = src.shape[-1] * 8
                ours = dk.execute(model, 0, 20, 1.0, "euler", "normal", pos, neg, {"samples": src}, 1.0,
                                  torch.full((1, side, side), g), "denoise", False, 1.0, 0.0)[0]["samples"]
                ref = nodes.KSampler().sample(model, 0, 20, 1.0, "euler", "normal", pos, neg, {"samples": src},
                                              denoise=g)[0]["samples"]
                a, b, d = ((ours - src).abs().mean().item(), (ref - src).abs().mean().item(),
                           (ours - ref).abs().mean().item())
                print(f"  g={g:.1f}  mean change ours {a:.4f}  KSampler {b:.4f}  mean |ours - KSampler| {d:.4f} "
                      f"({d / b:.1%})")


if __name__ == "__main__":
    main()
