"""Shared set-up for the benchmarks: ComfyUI in-process, models, paired timing, peak memory.

Run a benchmark from the pack root with ComfyUI's Python, e.g.
``COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_sampler.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the test-support package dde_world

from dde_world import locate  # noqa: E402


#: the device the benchmarks run on ("cpu" or "cuda"), set by :func:`comfy`
DEVICE = "cpu"


def add_device_argument(parser):
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu (default; float32) or cuda (ComfyUI's GPU, float16 models)")


def comfy(device: str = "cpu"):
    """ComfyUI in-process; ``device="cuda"`` lets ComfyUI use the GPU (the tests always force the CPU)."""
    global DEVICE
    path = locate.find_comfyui()
    if not path:
        sys.exit("ComfyUI not found: set COMFYUI_PATH (see README)")
    env = locate.comfy_in_process(path, cpu=device == "cpu")
    import comfy.model_management
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    if device == "cuda" and comfy.model_management.get_torch_device().type != "cuda":
        sys.exit("--device cuda: ComfyUI found no CUDA device")
    DEVICE = device
    return env


def dtype():
    import torch

    return torch.float16 if DEVICE == "cuda" else torch.float32


def sync():
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def paired(variants: dict, repeats: int) -> dict:
    """Run every variant once per round, rotating the order each round; returns times per variant."""
    names = list(variants)
    times = {n: [] for n in names}
    for n in names:          # warm-up (model load, caches)
        variants[n]()
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            dt, _ = timed(variants[n])
            times[n].append(dt)
    return times


def median(xs):
    return statistics.median(xs)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every millisecond)."""

    def __init__(self):
        self.peak = 0
        self._stop = False

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __enter__(self):
        self.base = self.rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def peak_memory(fn) -> tuple[int, int]:
    """(peak bytes above the level before the call, absolute peak) — CUDA allocator on GPU, RSS on CPU."""
    import torch

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        peak = torch.cuda.max_memory_allocated()
        return peak - before, peak
    with PeakRSS() as p:
        fn()
    return p.peak - p.base, p.peak


def device_name() -> str:
    import torch

    if DEVICE == "cuda":
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, float16)"
    return f"CPU ({os.cpu_count()} cores, torch {torch.__version__}, float32)"


# -- models ------------------------------------------------------------------------------------------

SDXL_CONFIG = dict(
    use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False, num_classes="sequential",
    adm_in_channels=2816, in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    transformer_depth=[0, 0, 2, 2, 10, 10], channel_mult=[1, 2, 4], transformer_depth_middle=10,
    use_linear_in_transformer=True, context_dim=2048, num_head_channels=64,
    transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], use_temporal_attention=False, use_temporal_resblock=False,
)


def _random_init(module, seed: int):
    """normal(0, 0.02) weights, unit norms, zero biases (ComfyUI's layers skip initialisation), drawn on the
    parameters' own device (seconds on a GPU even for SDXL's 2.6B parameters)."""
    import torch

    gens = {}
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for m in module.modules():
            for name, p in m.named_parameters(recurse=False):
                if isinstance(m, norms):
                    p.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    p.zero_()
                else:
                    gen = gens.setdefault(p.device, torch.Generator(device=p.device).manual_seed(seed))
                    p.copy_(torch.randn(p.shape, generator=gen, device=p.device).mul_(0.02).to(p.dtype))


def real_layout_unet(kind: str, seed: int = 0):
    """A random-weight UNet of the real ``sd15`` or ``sdxl`` layout on the benchmark device (fp16 on CUDA)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    from dde_world.tiny import SD15_FULL_CONFIG

    if kind == "sdxl":
        config = comfy.supported_models.SDXL(dict(SDXL_CONFIG))
    else:
        cfg = {k: v for k, v in SD15_FULL_CONFIG.items() if k not in ("num_heads", "num_head_channels")}
        config = comfy.supported_models.SD15(cfg)
    config.set_inference_dtype(dtype(), None)
    device = comfy.model_management.get_torch_device()
    base = config.get_model({}, device=device)   # built where it runs, as ComfyUI's loaders may do
    base.diffusion_model.to(dtype())
    _random_init(base.diffusion_model, seed)
    return comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=comfy.model_management.unet_offload_device())


def conditioning(kind: str, seed: int):
    """Random prompt conditionings of the layout's widths (SDXL: 2048 + pooled 1280)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if kind == "sdxl":
        return [[torch.randn(1, 77, 2048, generator=gen) * 0.5, {"pooled_output": torch.randn(1, 1280, generator=gen) * 0.5,
                                                                 "width": 1024, "height": 1024}]]
    return [[torch.randn(1, 77, 768, generator=gen) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]


def near_free_model(kind: str = "plain"):
    """A real ComfyUI MODEL whose network costs almost nothing (predicts zero noise): the hooks' own cost shows.

    ``kind``: ``"plain"``; ``"inpaint"`` (an inpainting model: mask and masked-image channels concatenated to its
    input); ``"per_token"`` (told the denoise mask, as LTXV / Wan 2.2 are for per-token timesteps)."""
    import torch

    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models_base

    class NearFreeNet(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()
            self.dtype = torch.float32
            self.register_buffer("anchor", torch.zeros(1))

        def forward(self, x, timesteps, context=None, **kwargs):
            return x[:, :4] * self.anchor   # an inpainting model's input carries 5 concatenated channels more

    class Config(comfy.supported_models_base.BASE):
        unet_config = {}
        unet_extra_config = {}
        latent_format = comfy.latent_formats.SD15
        memory_usage_factor = 0.01

    class PerToken(comfy.model_base.BaseModel):
        def extra_conds(self, **kwargs):
            import comfy.conds

            out = super().extra_conds(**kwargs)
            if kwargs.get("denoise_mask") is not None:
                out["denoise_mask"] = comfy.conds.CONDRegular(kwargs["denoise_mask"])
            return out

    device = comfy.model_management.get_torch_device()
    cls = PerToken if kind == "per_token" else comfy.model_base.BaseModel
    base = cls(Config({}), device=device, unet_model=NearFreeNet)
    if kind == "inpaint":
        base.set_inpaint()
    return comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=comfy.model_management.unet_offload_device())


def ramp(side: int):
    """A diagonal 0..1 ramp change map at picture resolution ``side`` x ``side``."""
    import torch

    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    return ((xx + yy) / 2).unsqueeze(0).contiguous()


def single_evaluations(model, positive, negative, latent, n: int, sigma: float):
    """``2n`` separate one-sample model evaluations at noise level ``sigma`` inside a real CFGGuider sampling call:
    what DiffEdit Mask's ``n`` draws cost without batching (the baseline of its benchmarks)."""
    import torch

    import comfy.samplers

    class SingleEvaluations(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            inner = model_wrap.inner_model
            for _ in range(n):
                x = inner.model_sampling.noise_scaling(sigmas[0], torch.randn_like(latent_image), latent_image)
                for c in (model_wrap.conds["positive"], model_wrap.conds["negative"]):
                    comfy.samplers.calc_cond_batch(inner, [c], x, sigmas[:1], extra_args["model_options"])
            return latent_image

    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative})
    guider.sample(torch.zeros_like(latent), latent, SingleEvaluations(), torch.tensor([sigma, 0.0]), disable_pbar=True)
