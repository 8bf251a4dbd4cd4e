"""Generic ComfyUI glue: what the running ComfyUI's own KSampler does, called the way it calls it.

The pack's samplers must see the latent KSampler sees and return the LATENT KSampler returns, on every
supported ComfyUI version. Rather than copy one version's arguments, these helpers read the running
ComfyUI's own functions (their signatures) once, at import.
"""

from __future__ import annotations

import inspect

import torch

import comfy.sample
import comfy.samplers

#: the keys an empty latent carries about the VAE it was made for (ComfyUI 0.3x's EmptyLatentImage, EmptySD3…)
DOWNSCALE_KEYS = ("downscale_ratio_spacial", "downscale_ratio_temporal")
#: the ones the running ComfyUI's ``fix_empty_latent_channels`` takes (none on v0.8.0); KSampler consumes them
CONSUMED_KEYS = tuple(k for k in DOWNSCALE_KEYS
                      if k in inspect.signature(comfy.sample.fix_empty_latent_channels).parameters)


def sampled_latent(model, latent: dict) -> torch.Tensor:
    """The latent KSampler samples for this LATENT: ComfyUI's fix of empty latents (channels, dimensions and,
    where the running ComfyUI does it, the size for the model's downscale ratio), with what ``common_ksampler``
    passes it."""
    ratios = {k: latent.get(k) for k in CONSUMED_KEYS}
    return comfy.sample.fix_empty_latent_channels(model, latent["samples"], **ratios)


def output_latent(latent: dict, samples: torch.Tensor) -> dict:
    """The LATENT a sampler node returns: the input's other keys, the new samples, without the keys KSampler
    consumed (``common_ksampler`` drops them: the samples now have the model's own size)."""
    out = latent.copy()
    for key in CONSUMED_KEYS:
        out.pop(key, None)
    out["samples"] = samples
    return out


def empty_noise(latent_image: torch.Tensor) -> torch.Tensor:
    """The noise KSamplerAdvanced uses with ``add_noise`` disabled: ComfyUI's ``prepare_empty_noise`` where the running
    ComfyUI has it, else the zeros on the CPU its ``common_ksampler`` makes (v0.8.0)."""
    prepare = getattr(comfy.sample, "prepare_empty_noise", None)
    if prepare is not None:
        return prepare(latent_image)
    return torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")


def ksampler_sigmas(model, steps: int, sampler_name: str, scheduler: str, denoise: float = 1.0,
                    device=None) -> torch.Tensor:
    """The schedule KSampler uses for these settings (its own code, so it always agrees).

    ``device``: where the schedule is returned (default: the model's load device, as KSampler does);
    the Differential KSampler keeps it on the CPU so reading a level never waits for the device.
    """
    ks = comfy.samplers.KSampler(model, steps=steps, device=model.load_device if device is None else device,
                                 sampler=sampler_name, scheduler=scheduler, denoise=denoise,
                                 model_options=model.model_options)
    return ks.sigmas.detach().clone()


def latent_preview_callback(model, steps: int):
    """ComfyUI's live preview callback for ``steps`` steps (None when previews are unavailable)."""
    try:
        import latent_preview  # ComfyUI's top-level preview module
        return latent_preview.prepare_callback(model, steps)
    except Exception:  # pragma: no cover - previews are optional
        return None
