"""Sampling hooks: Differential Diffusion inside ComfyUI's own sampling loop.

How it composes with ComfyUI (v0.8):

* :func:`patch_model` clones the MODEL and registers two keyed wrappers on the clone — nothing
  global is patched and the input model is never touched.
* The ``OUTER_SAMPLE`` wrapper runs once per sampling call. It prepares the run (the change map
  on the latent grid, multiplied by any latent ``noise_mask``, and the start step of every pixel)
  on the sampling device, hands ComfyUI that map as the ``denoise_mask`` so ComfyUI's own
  ``KSamplerX0Inpaint`` does the blending (kept pixels get the original noised with the
  sampler's own noise), installs a per-run ``denoise_mask_function`` that chains any function
  already installed, and after the last step copies never-freed pixels back bit-exactly.
* The ``APPLY_MODEL`` wrapper keeps an inpainting model's concat mask in step with the
  current threshold (ComfyUI builds it once per run).
* :func:`differential_sample` is the shared body of the two KSampler nodes; split sampling
  carries the original latent and its noise in the LATENT so a second pass continues the same
  global threshold schedule.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import torch

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.utils

from .core import maps as maps_core
from .core import prefill as prefill_core
from .core import schedule
from .core.errors import NodeInputError

KEY = "dde_change_map"
RUN_KEY = "dde_run"
CARRY_KEY = "dde_carry"
LOG = logging.getLogger("differential_edit")


@dataclass(frozen=True)
class Reference:
    """What ``denoise`` mode compares against: KSampler with this sampler/scheduler/denoise."""

    sampler_name: str = "euler"
    scheduler: str = "normal"
    denoise: float = 1.0


@dataclass
class ChangeMapSpec:
    """A change map and how to apply it. ``maps``: validated ``(B,H,W)`` white = change.

    ``global_sigmas``: the whole schedule when this run is one part of a split (Advanced node);
    ``None`` means the run's own schedule is the whole schedule.
    """

    maps: torch.Tensor
    mode: str = "step"
    softness: float = 0.0
    strength: float = 1.0
    reference: Reference = field(default_factory=Reference)
    global_sigmas: torch.Tensor | None = None
    node: str = "Differential KSampler"
    input_name: str = "change_map"
    fractional: bool = False          # schedule.fractional_start: map values between step boundaries blend
    prefill: str = "original"         # core.prefill.PREFILL: what pixels above prefill_above start from
    prefill_above: float = 0.5


def start_steps(spec: ChangeMapSpec, strength_map: torch.Tensor, sigmas: torch.Tensor, patcher) -> torch.Tensor:
    """Per-pixel start step for ``spec.mode`` over the full schedule ``sigmas`` (float32, CPU)."""
    n_steps = int(sigmas.numel()) - 1
    if spec.mode == "step":
        return schedule.start_steps_step(strength_map, n_steps)
    ms = patcher.get_model_object("model_sampling")
    if spec.mode == "timestep":
        sig = sigmas.to(torch.float32).cpu()
        sigma_to = float(ms.sigma_min)
        if float(sig[-1]) > sigma_to:
            sigma_to = float(sig[-1])
        ts = ms.timestep(sig[:-1]).to(torch.float64)
        ts_from = float(ms.timestep(sig[:1]))
        ts_to = float(ms.timestep(torch.tensor([sigma_to], dtype=torch.float32)))
        return schedule.start_steps_thresholds(strength_map, schedule.timestep_thresholds(ts.tolist(), ts_from, ts_to))
    if spec.mode == "denoise":
        ref = spec.reference
        ks = comfy.samplers.KSampler(patcher, steps=n_steps, device="cpu", sampler=ref.sampler_name,
                                     scheduler=ref.scheduler, denoise=1.0, model_options=patcher.model_options)

        def sigma_start(total_steps: int) -> float:
            return float(ks.calculate_sigmas(total_steps)[-(n_steps + 1)])

        return schedule.start_steps_denoise(strength_map, sigmas.tolist(), sigma_start, denoise=ref.denoise)
    raise NodeInputError(spec.node, "mode", f"one of {schedule.MODES}", repr(spec.mode))


def fraction_thresholds(spec: ChangeMapSpec, sigmas: torch.Tensor, patcher) -> torch.Tensor:
    """The smallest map value free at each step of the full schedule (for the ``fractional`` option)."""
    n_steps = int(sigmas.numel()) - 1
    if spec.mode == "step":
        return schedule.step_thresholds(n_steps)
    return schedule.thresholds_by_bisection(lambda g: start_steps(spec, g, sigmas, patcher), n_steps)


def prepare_run(spec: ChangeMapSpec, patcher, latent_shape, sigmas: torch.Tensor, noise_mask, device) -> schedule.DifferentialRun:
    """Fit the map to the latent, combine it with a latent noise mask, compute start steps."""
    g = maps_core.maps_for_latent(spec.maps, latent_shape, spec.node, spec.input_name)
    if noise_mask is not None:
        g = g * noise_mask[:, :1].to(g.device, torch.float32)
    whole = spec.global_sigmas if spec.global_sigmas is not None else sigmas
    full = whole.detach().to("cpu", torch.float32).clone()   # some samplers (uni_pc) edit sigmas in place
    start = start_steps(spec, g.cpu(), full, patcher)
    if spec.fractional:
        start = schedule.fractional_start(g.cpu(), start, fraction_thresholds(spec, full, patcher))
    return schedule.DifferentialRun(start=start.to(device), strength_map=g.to(device), sigmas=full.to(device),
                                    n_steps=int(full.numel()) - 1, softness=float(spec.softness),
                                    strength=float(spec.strength), fractional=bool(spec.fractional))


def ksampler_sigmas(model, steps: int, sampler_name: str, scheduler: str, denoise: float = 1.0) -> torch.Tensor:
    """The schedule KSampler uses for these settings (its own code, so it always agrees)."""
    ks = comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name, scheduler=scheduler,
                                 denoise=denoise, model_options=model.model_options)
    return ks.sigmas.detach().clone()


def plan(model, spec: ChangeMapSpec, latent_shape, steps: int, sampler_name: str, scheduler: str,
         denoise: float = 1.0) -> schedule.DifferentialRun:
    """What a Differential KSampler run with these settings will do, computed without sampling (CPU)."""
    full = ksampler_sigmas(model, steps, sampler_name, scheduler, denoise)
    if full.numel() < 2:   # denoise 0: nothing is sampled, nothing changes
        full = torch.zeros(1)
    spec = dataclasses.replace(spec, global_sigmas=full, reference=Reference(sampler_name, scheduler, float(denoise)))
    return prepare_run(spec, model, latent_shape, full, None, "cpu")


def _mask_function(run: schedule.DifferentialRun, previous):
    """Per-step ``denoise_mask_function``: the run's step mask, then any earlier function on top."""

    def mask_function(sigma, denoise_mask, extra_options):
        comfy.model_management.throw_exception_if_processing_interrupted()
        mask = run.mask(sigma, denoise_mask.dtype).expand(denoise_mask.shape)
        if previous is not None:
            mask = previous(sigma, mask, extra_options)
        return mask

    return mask_function


def _prefilled(spec: ChangeMapSpec, run: schedule.DifferentialRun, latent_image, patcher, seed):
    """The latent the sampler starts from and blends kept pixels with (``spec.prefill``; core.prefill)."""
    if spec.prefill == "original":
        return latent_image
    base = patcher.model
    noise = nothing = None
    if spec.prefill == "latent noise":
        gen = torch.Generator().manual_seed((int(seed or 0) + 0x5EED) % (2 ** 63))
        drawn = torch.randn(latent_image.shape, generator=gen, dtype=torch.float32)
        noise = base.process_latent_out(drawn.to(latent_image.device)).to(latent_image.dtype)
    elif spec.prefill == "latent nothing":
        nothing = base.process_latent_out(torch.zeros_like(latent_image, dtype=torch.float32)).to(latent_image.dtype)
    return prefill_core.prefill(latent_image, run.strength_map, spec.prefill_above, spec.prefill, noise, nothing)


def _outer_sample(spec: ChangeMapSpec, executor, noise, latent_image, sampler, sigmas, denoise_mask=None,
                  callback=None, disable_pbar=False, seed=None, latent_shapes=None):
    guider = executor.class_obj
    if latent_shapes is not None and len(latent_shapes) > 1:
        raise NodeInputError(spec.node, "latent_image", "a single latent (not a nested multi-part latent)",
                             f"{len(latent_shapes)} packed latents")
    patcher = guider.model_patcher
    device = patcher.load_device
    run = prepare_run(spec, patcher, latent_image.shape, sigmas, denoise_mask, device)
    options = guider.model_options  # the per-run copy made by CFGGuider.sample
    options["denoise_mask_function"] = _mask_function(run, options.get("denoise_mask_function"))
    options.setdefault("transformer_options", {})[RUN_KEY] = run
    mask_shape = (latent_image.shape[0], latent_image.shape[1]) + tuple(latent_image.shape[2:])
    full_mask = run.strength_map.to(latent_image.dtype).expand(mask_shape)
    fully_denoised = float(sigmas[-1]) == 0.0   # read before sampling: uni_pc rewrites a final 0 in place
    start_latent = _prefilled(spec, run, latent_image, patcher, seed)
    out = executor(noise, start_latent, sampler, sigmas, full_mask, callback, disable_pbar, seed, latent_shapes=latent_shapes)
    if fully_denoised:
        kept = run.kept.to(out.device)
        if bool(kept.any()):
            out = torch.where(kept, latent_image.to(out.device, out.dtype), out)
    return out


def _concat_layout(base_model, latent_channels: int):
    """Channel ranges of the mask channels in a BaseModel-style inpaint concat, or None."""
    keys = getattr(base_model, "concat_keys", ())
    if not keys or type(base_model).concat_cond is not comfy.model_base.BaseModel.concat_cond:
        return None
    sizes = {"mask": 1, "mask_inverted": 1, "masked_image": latent_channels, "concat_image": latent_channels}
    layout, pos = [], 0
    for k in keys:
        if k not in sizes:
            return None
        layout.append((k, pos, pos + sizes[k]))
        pos += sizes[k]
    return layout, pos


def _apply_model(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
    run = transformer_options.get(RUN_KEY)
    if run is not None and c_concat is not None:
        c_concat = _dynamic_concat(executor.class_obj, run, x, t, c_concat)
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def _dynamic_concat(base_model, run: schedule.DifferentialRun, x, t, c_concat):
    """Replace the concat's mask channels with the current thresholded mask (rounded, as ComfyUI does)."""
    found = _concat_layout(base_model, x.shape[1])
    b = run.start.shape[0]
    if found is None or found[1] != c_concat.shape[1] or x.shape[0] % b or tuple(x.shape[2:]) != tuple(run.start.shape[2:]):
        return c_concat
    layout, _ = found
    chunks = x.shape[0] // b
    mask = run.mask(t.reshape(chunks, b)[0]).round().to(c_concat.dtype)
    mask = mask.repeat(chunks, *([1] * (mask.ndim - 1))).to(c_concat.device)
    out = c_concat.clone()
    for key, lo, hi in layout:
        if key == "mask":
            out[:, lo:hi] = mask
        elif key == "mask_inverted":
            out[:, lo:hi] = 1.0 - mask
    return out


def patch_model(model, spec: ChangeMapSpec):
    """A clone of ``model`` that applies ``spec`` whenever it is sampled (any sampler node)."""
    patched = model.clone()
    for kind in (comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, comfy.patcher_extension.WrappersMP.APPLY_MODEL):
        patched.remove_wrappers_with_key(kind, KEY)

    def outer(executor, *args, **kwargs):
        return _outer_sample(spec, executor, *args, **kwargs)

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, KEY, outer)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY, _apply_model)
    return patched


# ----------------------------------------------------------------------------------------------
# The KSampler nodes' shared body
# ----------------------------------------------------------------------------------------------

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


def preview_callback(model, steps):
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
    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
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

    full = ksampler_sigmas(model, steps, sampler_name, scheduler, denoise)
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

    samples = comfy.sample.sample_custom(
        patched, noise, cfg, sampler, sigmas, positive, negative, original, noise_mask=latent.get("noise_mask"),
        callback=preview_callback(model, len(sigmas) - 1), disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)

    out = latent.copy()
    out["samples"] = samples
    out.pop(CARRY_KEY, None)
    if float(sigmas[-1]) != 0.0:
        out[CARRY_KEY] = {"original": original, "noise": noise, "seed": seed}
    return out
