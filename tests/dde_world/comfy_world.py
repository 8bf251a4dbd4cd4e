"""The analytic world as a real ComfyUI MODEL.

``make_model(world, family)`` builds ``comfy.model_base.BaseModel`` around :class:`AnalyticNet`
(as its ``diffusion_model``) and wraps it in a ``ModelPatcher``, so ComfyUI's own samplers,
schedulers, CFG, wrappers and mask functions drive it exactly as they drive a UNet.

Families: ``eps`` (SD1.5-style discrete eps-prediction), ``v`` (discrete v-prediction) and
``flow`` (rectified flow with SD3's shift 3). Requires ComfyUI on ``sys.path``.
"""

from __future__ import annotations

import torch

import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.supported_models_base

from .analytic import WIDTH, AnalyticWorld

FAMILIES = ("eps", "v", "flow")
_TYPES = {
    "eps": comfy.model_base.ModelType.EPS,
    "v": comfy.model_base.ModelType.V_PREDICTION,
    "flow": comfy.model_base.ModelType.FLOW,
}


class AnalyticNet(torch.nn.Module):
    """A ``diffusion_model`` whose output makes ComfyUI's denoised prediction the exact posterior mean.

    ``calls`` records the batch size of every forward (tests count model calls with it);
    ``concats`` the concat channels an inpainting model would see (``BaseModel.set_inpaint()``).
    """

    def __init__(self, world: AnalyticWorld = None, family: str = "eps", device=None, operations=None, **kwargs):
        super().__init__()
        self.world = world
        self.family = family
        self.dtype = torch.float32
        self.calls: list[int] = []
        self.concats: list[torch.Tensor] = []
        self.register_buffer("anchor", torch.zeros(1))

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, **kwargs):
        sig = transformer_options.get("sigmas")
        if sig is None:
            raise RuntimeError("AnalyticNet needs transformer_options['sigmas'] (ComfyUI's calc_cond_batch sets it)")
        if x.shape[1] > 4:  # an inpainting model's concat channels follow the latent: record, then ignore
            self.concats.append(x[:, 4:].detach().clone())
            x = x[:, :4]
        sig = sig.to(torch.float64).reshape(-1)
        if sig.numel() != x.shape[0]:
            sig = sig.repeat(x.shape[0] // sig.numel())
        s = sig.view(-1, 1, 1, 1)
        xin = x.to(torch.float64)
        x_raw = xin if self.family == "flow" else xin * torch.sqrt(s * s + 1.0)
        ids = self.world.decode_context(context)
        x0 = self.world.posterior_mean(x_raw.to(torch.float32), sig, ids, self.family).to(torch.float64)
        self.calls.append(int(x.shape[0]))
        if self.family == "v":
            out = (x_raw / (s * s + 1.0) - x0) * torch.sqrt(s * s + 1.0) / s
        else:
            out = (x_raw - x0) / s
        return out.to(x.dtype)


class AnalyticConfig(comfy.supported_models_base.BASE):
    unet_config = {}
    unet_extra_config = {}
    latent_format = comfy.latent_formats.LatentFormat
    memory_usage_factor = 0.01

    def __init__(self, world: AnalyticWorld, family: str, shift: float = 3.0):
        super().__init__({"world": world, "family": family})
        if family == "flow":
            self.sampling_settings = {"shift": shift, "multiplier": 1000}


def make_model(world: AnalyticWorld, family: str = "eps", shift: float = 3.0) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around the world's ideal denoiser for ``family`` (eps / v / flow)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    config = AnalyticConfig(world, family, shift)
    device = comfy.model_management.get_torch_device()
    base = comfy.model_base.BaseModel(config, model_type=_TYPES[family], device=device, unet_model=AnalyticNet)
    return comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=comfy.model_management.unet_offload_device())


def net_of(model: comfy.model_patcher.ModelPatcher) -> AnalyticNet:
    return model.model.diffusion_model


def conditioning(world: AnalyticWorld, cond_id: int | None):
    """ComfyUI CONDITIONING selecting one condition (None: unconditional)."""
    return [[world.context(cond_id), {"pooled_output": torch.zeros(1, WIDTH)}]]
