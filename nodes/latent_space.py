"""What a model's latent format says about the latents the pack's nodes take from it.

ComfyUI gives every model a ``latent_format``: ``latent_dimensions`` 2 for pictures (4-D latents), 3 for video
(5-D; KSampler adds the frame axis to a 4-D one), 1 for audio and 3D shapes. The pack's nodes edit pictures
and video: :func:`model_latent` is the one check every node that takes a MODEL and a LATENT makes.
:func:`fitted_latent` is that check plus the latent KSampler samples (an empty one fixed as ComfyUI fixes it).
:func:`pixels_per_cell` is how many picture pixels one latent cell covers (8 for SD / Flux, 16 for Flux.2 and
Wan 2.2, 32 for LTXV, 1 for pixel-space models): the size of a picture a node makes when none is connected.
"""

from __future__ import annotations

import torch

from .comfy_glue import sampled_latent
from .core.errors import InputError
from .core.validate import as_latent


#: picture pixels per latent cell of the latent formats that predate ``spacial_downscale_ratio`` (ComfyUI v0.8.0
#: has none; v0.33.0's values), looked up by class name along the format's class hierarchy; others are 8
_RATIOS = {"ChromaRadiance": 1, "SC_B": 4, "Flux2": 16, "Wan22": 16, "HunyuanVideo15": 16, "HunyuanImage21": 32,
           "LTXV": 32, "SC_Prior": 42}


def latent_format(model):
    return model.get_model_object("latent_format")


def pixels_per_cell(model) -> int:
    """Picture pixels per latent cell side: the model's ``latent_format.spacial_downscale_ratio``."""
    fmt = latent_format(model)
    ratio = getattr(fmt, "spacial_downscale_ratio", None)
    if ratio is None:
        ratio = next((_RATIOS[c.__name__] for c in type(fmt).__mro__ if c.__name__ in _RATIOS), 8)
    return max(1, int(ratio))


def _is_audio(model) -> bool:
    """ComfyUI marks its audio models (Stable Audio, ACE-Step, ...) with ``audio_model`` in their unet_config."""
    config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None) or {}
    return "audio_model" in config


def model_latent(model, latent, input_name: str = "latent_image") -> torch.Tensor:
    """The ``samples`` of ``latent`` (``core.validate.as_latent``) in a layout ``model`` samples: a 4-D latent for
    an image model, 5-D (or 4-D, given a frame axis as KSampler does) for a video model; an :class:`InputError`
    naming the input for the latents of audio, 3D and other non-picture models."""
    fmt = latent_format(model)
    dims = int(getattr(fmt, "latent_dimensions", 2))
    if dims not in (2, 3) or _is_audio(model):
        kind = "audio" if _is_audio(model) else f"{dims}-D (audio or 3D)"
        raise InputError(input_name, "the latent of an image or video model (the pack's nodes edit pictures and "
                         "video)", f"a latent for a model whose latents are {kind} ({type(fmt).__name__})")
    return as_latent(latent, input_name, (4,) if dims == 2 else (4, 5))


def fitted_latent(model, latent: dict, input_name: str = "latent") -> torch.Tensor:
    """The latent as KSampler samples it: :func:`model_latent`'s check, then ComfyUI's fix of empty latents
    (:func:`comfy_glue.sampled_latent`), then an :class:`InputError` naming the input when it still cannot fit the
    model (another channel count, a video latent for an image model) instead of a tensor-size error from inside
    the model."""
    model_latent(model, latent, input_name)
    samples = sampled_latent(model, latent)
    fmt = latent_format(model)
    dims = 2 + int(getattr(fmt, "latent_dimensions", 2))
    channels = int(getattr(fmt, "latent_channels", samples.shape[1]))
    if samples.ndim != dims or samples.shape[1] != channels:
        kind = {4: "an image latent", 5: "a video latent"}.get(dims, f"a {dims}-D latent")
        raise InputError(input_name, f"{kind} of this model ({channels} channels, {dims}-D)",
                         f"shape {tuple(samples.shape)}")
    return samples
