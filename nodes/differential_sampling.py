"""The Differential KSampler nodes' shared body: KSampler / KSamplerAdvanced semantics around the
change-map hooks (``hooks.py``). Split sampling carries the original latent and its noise in the LATENT
(``CARRY_KEY``) so a second pass continues the same global threshold schedule.
"""

from __future__ import annotations

import dataclasses

import torch

import comfy.sample
import comfy.samplers
import comfy.utils

from .core.errors import InputError
from .hooks import CARRY_KEY, LOG, ChangeMapSpec, Reference, patch_model, schedule_for


def _continue_from(latent: torch.Tensor, sampler):
    """A copy of a KSAMPLER that starts from ``latent`` (an earlier pass's noisy output).

    ComfyUI's sampler would start from ``noise_scaling(s0, noise, latent_image)``; here
    ``latent_image`` and ``noise`` are the *original* and its noise (what kept pixels blend
    with), so the starting point is replaced by what KSamplerAdvanced uses when it continues.
    """
    inner = sampler.sampler_function

    def continued(model_k, x, sigmas, *args, **kwargs):
        base = model_k.inner_model.inner_model
        start = latent.to(x.device, x.dtype)
        if torch.count_nonzero(start) > 0:
            start = base.process_latent_in(start)
        start = base.model_sampling.noise_scaling(sigmas[0], torch.zeros_like(start), start)
        return inner(model_k, start, sigmas, *args, **kwargs)

    return comfy.samplers.KSAMPLER(continued, extra_options=sampler.extra_options, inpaint_options=sampler.inpaint_options)


def fitted_latent(model, samples: torch.Tensor, input_name: str = "latent") -> torch.Tensor:
    """The latent as KSampler samples it (an empty one of the wrong channel count or dimensions fixed, as
    ``fix_empty_latent_channels`` does), or an :class:`InputError` when it cannot fit the model at all (e.g. a
    video latent for an image model), instead of a tensor-size error from inside the model."""
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    fmt = model.get_model_object("latent_format")
    dims = 2 + int(getattr(fmt, "latent_dimensions", 2))
    channels = int(getattr(fmt, "latent_channels", samples.shape[1]))
    if samples.ndim != dims or samples.shape[1] != channels:
        kind = {4: "an image latent", 5: "a video latent"}.get(dims, f"a {dims}-D latent")
        raise InputError(input_name, f"{kind} of this model ({channels} channels, {dims}-D)",
                         f"shape {tuple(samples.shape)}")
    return samples


def latent_preview_callback(model, steps):
    try:
        import latent_preview  # ComfyUI's top-level preview module
        return latent_preview.prepare_callback(model, steps)
    except Exception:  # pragma: no cover - previews are optional
        return None


def differential_sample(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                        latent: dict, spec: ChangeMapSpec, denoise: float = 1.0, add_noise: bool = True,
                        start_step: int | None = None, last_step: int | None = None,
                        return_with_leftover_noise: bool = False) -> dict:
    """KSampler / KSamplerAdvanced semantics plus a change map. Returns the output LATENT dict."""
    latent_image = fitted_latent(model, latent["samples"], "latent_image")
    carry = latent.get(CARRY_KEY) if not add_noise else None
    if carry is not None and tuple(carry["original"].shape) != tuple(latent_image.shape):
        LOG.warning("%s: the latent carries a differential pass of another shape; starting a new schedule", spec.node)
        carry = None

    if carry is not None:
        original, noise, seed = carry["original"], carry["noise"], int(carry["seed"])
    else:
        original = latent_image
        if add_noise:
            noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
        else:
            noise = torch.zeros(latent_image.size(), dtype=latent_image.dtype, layout=latent_image.layout, device="cpu")

    full = schedule_for(model, spec, steps, sampler_name, scheduler, denoise)
    sigmas = full
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if not return_with_leftover_noise:
            sigmas[-1] = 0
    if start_step is not None and start_step > 0:
        if start_step >= len(sigmas) - 1:
            out = latent.copy()
            out["samples"] = latent_image
            return out
        sigmas = sigmas[start_step:]
    if sigmas.numel() <= 1:
        out = latent.copy()
        out["samples"] = latent_image
        return out

    spec = dataclasses.replace(spec, global_sigmas=full,
                               reference=Reference(sampler_name, scheduler, float(denoise)))
    patched = patch_model(model, spec)
    sampler = comfy.samplers.sampler_object(sampler_name)
    if carry is not None:
        sampler = _continue_from(latent_image, sampler)

    leftover = float(sigmas[-1]) != 0.0   # read before sampling: uni_pc rewrites a final 0 in place
    samples = comfy.sample.sample_custom(
        patched, noise, cfg, sampler, sigmas, positive, negative, original, noise_mask=latent.get("noise_mask"),
        callback=latent_preview_callback(model, len(sigmas) - 1), disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)

    out = latent.copy()
    out["samples"] = samples
    out.pop(CARRY_KEY, None)
    if leftover:
        out[CARRY_KEY] = {"original": original, "noise": noise, "seed": seed}
    return out
