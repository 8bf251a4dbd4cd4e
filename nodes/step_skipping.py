"""Leading steps that free no pixel, replayed without the model.

When a change map's brightest value frees its first pixel at step ``k > 0``, every pixel is kept in steps
``0..k-1``: ComfyUI's ``KSamplerX0Inpaint`` returns the original latent as the denoised value whatever the
model says. For the deterministic one-step samplers those steps are replayed with that denoised value and
no model call — the same arithmetic, so the result equals the unskipped run bit for bit — and a map whose
brightest value is ``g`` costs about what ``KSampler(denoise = g)`` costs.
"""

from __future__ import annotations

import torch

import comfy.k_diffusion.sampling as kds
import comfy.samplers

from .core import schedule


def _one_step_samplers() -> tuple:
    """k-diffusion sampler functions whose state is ``x`` alone and that draw no noise (with no extra options)."""
    return tuple(getattr(kds, name) for name in ("sample_euler", "sample_heun", "sample_dpm_2") if hasattr(kds, name))


#: samplers whose leading no-pixel-free steps are skipped (see :func:`skippable_steps`)
SKIPPING_SAMPLERS = ("euler", "heun", "dpm_2")
_ONE_STEP = _one_step_samplers()
_ONE_STEP_LOOKAHEAD = next((f for f in _ONE_STEP if f.__name__ == "sample_heun"), None)


def skippable_steps(host_run: schedule.DifferentialRun, sigmas: torch.Tensor, sampler) -> int:
    """How many leading steps of this run free no pixel at all (0: none, or a sampler that cannot skip).

    In such a step every pixel is kept: the denoised value is the original everywhere and the model
    call changes nothing. For the deterministic one-step samplers (:data:`SKIPPING_SAMPLERS`, plain,
    without extra options) those steps are replayed without the model — the same arithmetic, so the
    result equals the unskipped run; other samplers (multistep history, noise drawn per step) run
    every step. Computed on the CPU copy of the run: no host read.
    """
    if not isinstance(sampler, comfy.samplers.KSAMPLER) or sampler.sampler_function not in _ONE_STEP:
        return 0
    if sampler.extra_options or sampler.inpaint_options:
        return 0
    n_local = int(sigmas.numel()) - 1
    first = next((j for j in range(n_local) if bool((host_run.mask(sigmas[j:j + 1]) > 0).any())), None)
    if first is None:
        return 0
    if sampler.sampler_function is _ONE_STEP_LOOKAHEAD:
        first -= 1   # Heun's second call of step j is at level j + 1: that step must free nothing either
    return max(first, 0)


def skipping(sampler, skip: int):
    """A copy of a one-step KSAMPLER that replays its first ``skip`` steps without calling the model.

    In those steps every pixel is kept, so ComfyUI's ``KSamplerX0Inpaint`` returns the original latent
    as the denoised value whatever the model says; the sampler's own update then moves the state
    exactly as in the full run. The remaining steps run normally from that state.
    """
    inner = sampler.sampler_function

    def skipping(model_k, x, sigmas, extra_args=None, callback=None, disable=None, **options):
        original = model_k.latent_image

        def kept(x_now, sigma, **kwargs):
            return original.expand_as(x_now)

        x = inner(kept, x, sigmas[:skip + 1], extra_args=extra_args, callback=None, disable=True, **options)
        shifted = None if callback is None else (lambda info: callback({**info, "i": info["i"] + skip}))
        return inner(model_k, x, sigmas[skip:], extra_args=extra_args, callback=shifted, disable=disable, **options)

    return comfy.samplers.KSAMPLER(skipping, extra_options=sampler.extra_options, inpaint_options=sampler.inpaint_options)


