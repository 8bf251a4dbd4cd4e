"""What the node messages cost: the Differential KSampler's checks (stretched map, greys the steps
cannot render) against the whole node run.

Paired rounds: (a) the Differential KSampler node (tiny or full SD1.5 UNet, a radial gradient map,
so every check runs, including the schedule plan for the grey values), (b) the same checks alone
(``sampler_nodes._key_and_messages`` on a change map read afresh, so the plan is made every round). Prints the
ratio of medians b / a per threshold mode.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_messages.py [--model tiny|full]
"""

from __future__ import annotations

import argparse

import common


def run(kind: str, steps: int, repeats: int, size: int):
    env = common.comfy()
    import torch

    from dde_world.tiny import unet_model

    sampler_nodes = env.module("nodes.sampler_nodes")
    ChangeMap = env.module("nodes.plan").ChangeMap
    node = sampler_nodes.DifferentialKSampler
    construct = env.module("nodes.core.construct")
    model = unet_model(full=kind == "full")
    torch.manual_seed(0)
    positive = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    negative = [[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]]
    latent = {"samples": torch.randn(1, 4, size, size)}
    cmap = construct.radial_gradient((1, size * 8, size * 8), 0.5, 0.5, 0.1, 0.45, "smoothstep")
    print(f"\n== Differential KSampler messages, {kind} SD1.5 UNet, latent {size}x{size}, {steps} steps, "
          f"{repeats} paired rounds on {common.device_name()}")
    for mode in ("step", "denoise"):
        def whole():
            return node.execute(model=model, seed=0, steps=steps, cfg=1.0, sampler_name="euler", scheduler="normal",
                                positive=positive, negative=negative, latent_image=latent, denoise=1.0,
                                change_map=cmap, mode=mode, invert=False, strength=1.0, softness=0.0)

        def checks():
            name = "Differential KSampler"
            return sampler_nodes._key_and_messages(name, ChangeMap.read(cmap, mode, node=name), model, latent, steps,
                                                   "euler", "normal", 1.0)

        with torch.inference_mode():
            times = common.paired({"node": whole, "checks": checks}, repeats)
        med = {k: common.median(v) for k, v in times.items()}
        print(f"  mode {mode:<8} node median {med['node']:.3f} s, checks {med['checks'] * 1000:.1f} ms, "
              f"ratio checks / node {med['checks'] / med['node']:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "full"], default="tiny")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=32, help="latent side")
    a = p.parse_args()
    run(a.model, a.steps, a.repeats, a.size)


if __name__ == "__main__":
    main()
