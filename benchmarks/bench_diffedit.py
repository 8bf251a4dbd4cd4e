"""DiffEdit mask estimation vs the time of 2n single model evaluations.

Paired rounds: (a) the DiffEdit Mask node with n draws (its batched evaluation), (b) 2n separate
single-sample model evaluations through ComfyUI's calc_cond_batch at the same level, same
conditionings. Prints the ratio of medians (goal <= 1.05; below 1 when batching helps), the
number of model calls the node made and peak memory.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_diffedit.py [--model tiny|full|both]
"""

from __future__ import annotations

import argparse

import common


class CallCounter:
    """Counts diffusion-model forwards through a DIFFUSION_MODEL wrapper (no patching of ComfyUI)."""

    def __init__(self, model):
        import comfy.patcher_extension as pe

        self.calls = 0
        self.model = model.clone()
        self.model.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "dde_bench_count", self._wrap)

    def _wrap(self, executor, *args, **kwargs):
        self.calls += 1
        return executor(*args, **kwargs)


def run(kind: str, n: int, repeats: int, size: int, batch_size: int, device: str = "cpu"):
    env = common.comfy(device)
    import torch

    from dde_world.tiny import unet_model

    de = env.module("nodes.diffedit_sampling")
    model = common.real_layout_unet("sd15") if device == "cuda" and kind == "full" else unet_model(full=kind == "full", dtype=common.dtype())
    torch.manual_seed(0)
    query = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    reference = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    latent = torch.randn(1, 4, size, size)
    counter = CallCounter(model)
    mask_node = env.node("DDE_DiffEditMask")

    def ours():
        return mask_node.execute(counter.model, query, {"samples": latent}, 0.5, n, 0, 1.0, "rescale", 0.5, 3.0, 0.8, 0.0,
                                 0, batch_size, reference)

    def singles():
        common.single_evaluations(model, query, reference, latent, n, de.noise_level(model, 0.5))

    with torch.inference_mode():
        times = common.paired({"DiffEdit Mask": ours, "2n single evaluations": singles}, repeats)
        counter.calls = 0
        ours()
        calls = counter.calls
        mem = {name: common.peak_memory(f) for name, f in (("DiffEdit Mask", ours), ("2n single evaluations", singles))}
    med = {k: common.median(v) for k, v in times.items()}
    print(f"\n== DiffEdit Mask, {kind} SD1.5 UNet, latent {size}x{size}, n = {n}, batch_size = {batch_size or 'auto'}, "
          f"{repeats} paired rounds on {common.device_name()}")
    for k in med:
        print(f"  {k:<24} median {med[k]:.3f} s   peak +{mem[k][0] / 2**20:8.1f} MiB (abs {mem[k][1] / 2**20:8.1f} MiB)")
    print(f"  model calls of the node: {calls} (2n = {2 * n} evaluations)")
    print(f"  ratio DiffEdit Mask / 2n single evaluations  {med['DiffEdit Mask'] / med['2n single evaluations']:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["tiny", "full", "both"], default="both")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--repeats", type=int, default=None, help="paired rounds (default: 7 tiny, 3 full)")
    p.add_argument("--size", type=int, default=32, help="latent side")
    p.add_argument("--batch-size", type=int, default=0, help="the node's batch_size (0 = auto)")
    common.add_device_argument(p)
    a = p.parse_args()
    for kind in (["tiny", "full"] if a.model == "both" else [a.model]):
        run(kind, a.n, a.repeats or (7 if kind == "tiny" else 3), a.size, a.batch_size, a.device)


if __name__ == "__main__":
    main()
