"""The Differential KSampler nodes' shared body: KSampler / KSamplerAdvanced semantics around the
change-map hooks (``hooks.py``). Split sampling carries the original latent and its noise in the LATENT
(``CARRY_KEY``) so a second pass continues the same global threshold schedule.
"""

from __future__ import annotations

import logging

import torch

import comfy.sample
import comfy.samplers
import comfy.utils

from .comfy_glue import empty_noise, latent_preview_callback, output_latent
from .latent_space import fitted_latent
from .hooks import patch_model
from .plan import ChangeMap, PlanKey

CARRY_KEY = "dde_carry"   # a split run's original latent, its noise and seed, carried to the next part
LOG = logging.getLogger("differential_edit")


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


def differential_sample(model, seed: int, cfg: float, positive, negative, latent: dict, change_map: ChangeMap,
                        key: PlanKey, add_noise: bool = True, start_step: int | None = None,
                        last_step: int | None = None, return_with_leftover_noise: bool = False) -> dict:
    """KSampler / KSamplerAdvanced semantics plus a change map. Returns the output LATENT dict.

    ``key``: what the run is planned for (:meth:`PlanKey.for_ksampler`: the whole schedule of the steps,
    sampler, scheduler and denoise); the sampling hooks find the node's plan for it.
    """
    latent_image = fitted_latent(model, latent, "latent_image")
    carry = latent.get(CARRY_KEY) if not add_noise else None
    if carry is not None and tuple(carry["original"].shape) != tuple(latent_image.shape):
        LOG.warning("%s: the latent carries a differential pass of another shape; starting a new schedule", change_map.node)
        carry = None

    if carry is not None:
        original, noise, seed = carry["original"], carry["noise"], int(carry["seed"])
    else:
        original = latent_image
        if add_noise:
            noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
        else:
            noise = empty_noise(latent_image)

    full = key.schedule
    sigmas = full.clone()
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if not return_with_leftover_noise:
            sigmas[-1] = 0
    if start_step is not None and start_step > 0:
        if start_step >= len(sigmas) - 1:
            return output_latent(latent, latent_image)
        sigmas = sigmas[start_step:]
    if sigmas.numel() <= 1:
        return output_latent(latent, latent_image)

    patched = patch_model(model, change_map, key.reference, whole=full)
    sampler = comfy.samplers.sampler_object(key.reference.sampler_name)
    if carry is not None:
        sampler = _continue_from(latent_image, sampler)

    leftover = float(sigmas[-1]) != 0.0   # read before sampling: uni_pc rewrites a final 0 in place
    samples = comfy.sample.sample_custom(
        patched, noise, cfg, sampler, sigmas, positive, negative, original, noise_mask=latent.get("noise_mask"),
        callback=latent_preview_callback(model, len(sigmas) - 1), disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)

    out = output_latent(latent, samples)
    out.pop(CARRY_KEY, None)
    if leftover:
        out[CARRY_KEY] = {"original": original, "noise": noise, "seed": seed}
    return out
