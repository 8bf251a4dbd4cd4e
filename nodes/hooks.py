"""Change-map hooks: Differential Diffusion inside ComfyUI's own sampling loop.

How it composes with ComfyUI (v0.8 and later):

* :func:`patch_model` clones the MODEL and registers two keyed wrappers on the clone — nothing
  global is patched and the input model is never touched.
* The ``OUTER_SAMPLE`` wrapper runs once per sampling call. It takes the change map's plan for what it
  sees (``plan.py``: the latent shape, the whole schedule, the noise mask — the plan a node made before
  sampling, or a new one), puts it on the sampling device, hands ComfyUI the map as the ``denoise_mask`` so ComfyUI's own
  ``KSamplerX0Inpaint`` does the blending (kept pixels get the original noised with the
  sampler's own noise), installs a per-run ``denoise_mask_function`` that chains any function
  already installed, and after the last step copies never-freed pixels back bit-exactly.
* The ``APPLY_MODEL`` wrapper keeps what the model is told in step with the current threshold
  (ComfyUI builds it once per run): an inpainting model's concat mask (times the conditioning's
  own inpaint mask when it carries one) and the ``denoise_mask`` that LTXV / Wan 2.2-style models
  turn into per-token timesteps. A map that frees every pixel from the first step runs as plain
  KSampler (no mask at all), so it is KSampler bit for bit on every family.

Leading steps that free no pixel are replayed without the model (``step_skipping.py``). The Differential
KSampler nodes' shared body (KSampler semantics around these hooks) is in ``differential_sampling.py``.
"""

from __future__ import annotations

import torch

import comfy.model_base
import comfy.model_management
import comfy.patcher_extension

from .core import prefill as prefill_core
from .core import schedule
from .core.errors import InputError
from .plan import ChangeMap, PlanKey, Reference
from .step_skipping import skipping, skippable_steps

WRAPPER_KEY = "dde_change_map"   # the key of this pack's wrappers on a cloned model
RUN_KEY = "dde_run"
OWN_CONCAT_KEY = "dde_own_concat_mask"


def _mask_function(run: schedule.DifferentialRun, previous):
    """Per-step ``denoise_mask_function``: the run's step mask, then any earlier function on top."""

    def mask_function(sigma, denoise_mask, extra_options):
        comfy.model_management.throw_exception_if_processing_interrupted()
        mask = run.on(denoise_mask.device).mask(sigma.to(denoise_mask.device), denoise_mask.dtype).expand(denoise_mask.shape)
        if previous is not None:
            mask = previous(sigma, mask, extra_options)
        return mask

    return mask_function


def _prefilled(change_map: ChangeMap, run: schedule.DifferentialRun, latent_image, patcher, seed):
    """The latent the sampler starts from and blends kept pixels with (``change_map.prefill``; core.prefill)."""
    if change_map.prefill == "original":
        return latent_image
    base = patcher.model
    noise = nothing = None
    if change_map.prefill == "latent noise":
        gen = torch.Generator().manual_seed((int(seed or 0) + 0x5EED) % (2 ** 63))
        drawn = torch.randn(latent_image.shape, generator=gen, dtype=torch.float32)
        noise = base.process_latent_out(drawn.to(latent_image.device)).to(latent_image.dtype)
    elif change_map.prefill == "latent nothing":
        nothing = base.process_latent_out(torch.zeros_like(latent_image, dtype=torch.float32)).to(latent_image.dtype)
    return prefill_core.prefill(latent_image, run.strength_map, change_map.prefill_above, change_map.prefill, noise, nothing)


def _outer_sample(change_map: ChangeMap, reference: Reference, whole: torch.Tensor | None, executor, noise, latent_image,
                  sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False, seed=None, latent_shapes=None):
    guider = executor.class_obj
    if latent_shapes is not None and len(latent_shapes) > 1:
        raise InputError("latent_image", "a single latent (not a nested multi-part latent)",
                         f"{len(latent_shapes)} packed latents", change_map.node)
    patcher = guider.model_patcher
    device = patcher.load_device
    # the one host read of a run: this run's levels (already on the CPU for the pack's own nodes)
    local = sigmas.detach().to("cpu", torch.float32).clone()
    key = PlanKey.of(patcher, latent_image.shape, whole if whole is not None else local, reference, denoise_mask)
    planned = change_map.plan(patcher, key)
    host_run = planned.run
    if denoise_mask is None and change_map.prefill == "original" and planned.everything_free:
        # every pixel is free from the first step: this is KSampler's own run (no mask at all), so models
        # that read the mask (inpaint concat, per-token timesteps) are told exactly what KSampler tells them
        return executor(noise, latent_image, sampler, sigmas, None, callback, disable_pbar, seed, latent_shapes=latent_shapes)
    run = host_run.on(device)
    options = guider.model_options  # the per-run copy made by CFGGuider.sample
    previous = options.get("denoise_mask_function")
    options["denoise_mask_function"] = _mask_function(run, previous)
    transformer_options = options.setdefault("transformer_options", {})
    transformer_options[RUN_KEY] = run
    # the conditioning brings its own inpaint mask (InpaintModelConditioning): the concat mask combines with it
    transformer_options[OWN_CONCAT_KEY] = any("concat_mask" in c for conds in guider.conds.values() for c in conds)
    # one channel (KSamplerX0Inpaint broadcasts it): models that build concat channels from the run's denoise mask
    # (Hunyuan Video 1.5, Kandinsky 5) take it as one channel, as they take an image-to-video node's concat_mask
    mask_shape = (latent_image.shape[0], 1) + tuple(latent_image.shape[2:])
    full_mask = run.strength_map.to(latent_image.dtype).expand(mask_shape)
    fully_denoised = float(local[-1]) == 0.0   # read before sampling: uni_pc rewrites a final 0 in place
    start_latent = _prefilled(change_map, run, latent_image, patcher, seed)
    skip = skippable_steps(host_run, local, sampler) if previous is None else 0
    if skip:
        sampler = skipping(sampler, skip)
    out = executor(noise, start_latent, sampler, sigmas, full_mask, callback, disable_pbar, seed, latent_shapes=latent_shapes)
    if fully_denoised:   # never-freed pixels come back bit-exact (a no-op where none is kept: no host read)
        out = torch.where(run.kept.to(out.device), latent_image.to(out.device, out.dtype), out)
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
    if run is not None:
        if c_concat is not None:
            own = bool(transformer_options.get(OWN_CONCAT_KEY, False))
            c_concat = _dynamic_concat(executor.class_obj, run, x, t, c_concat, own)
        if isinstance(kwargs.get("denoise_mask"), torch.Tensor):
            kwargs["denoise_mask"] = _step_denoise_mask(run, x, t, kwargs["denoise_mask"])
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def _step_mask_rows(run: schedule.DifferentialRun, x, t):
    """The current step mask for every row of the model batch ``x`` (rows = chunks x latent batch), or None."""
    b = run.start.shape[0]
    if x.shape[0] % b or tuple(x.shape[2:]) != tuple(run.start.shape[2:]):
        return None
    chunks = x.shape[0] // b
    mask = run.on(x.device).mask(t.reshape(chunks, b)[0].to(x.device))   # on x's device (a model on several GPUs)
    return mask.repeat(chunks, *([1] * (mask.ndim - 1)))


def _step_denoise_mask(run: schedule.DifferentialRun, x, t, denoise_mask):
    """Models that read ``denoise_mask`` (LTXV / Wan 2.2 per-token timesteps, Cosmos) get the current step mask.

    ComfyUI hands them the mask given to the sampler once per run (here the static change map);
    the tokens still kept at this step hold the original and must be told so, the freed ones the step's level.
    """
    mask = _step_mask_rows(run, x, t)
    if mask is None or denoise_mask.shape[0] != mask.shape[0] or denoise_mask.ndim != mask.ndim:
        return denoise_mask
    return mask.to(denoise_mask.device, denoise_mask.dtype).expand(denoise_mask.shape)


def _dynamic_concat(base_model, run: schedule.DifferentialRun, x, t, c_concat, own: bool = False):
    """Put the current thresholded mask (rounded, as ComfyUI does) into the concat's mask channels.

    ``own``: the conditioning carries its own inpaint mask (``concat_mask``): the channels already hold it
    and the step mask multiplies it (a pixel is inpainted when the user's mask and the step both free it),
    so a map of 1 tells the model exactly what KSampler tells it. Otherwise the channels came from the
    static change map and are replaced.
    """
    found = _concat_layout(base_model, x.shape[1])
    mask = _step_mask_rows(run, x, t)
    if found is None or found[1] != c_concat.shape[1] or mask is None:
        return c_concat
    layout, _ = found
    mask = mask.round().to(c_concat.device, c_concat.dtype)
    out = c_concat.clone()
    for key, lo, hi in layout:
        if key == "mask":
            out[:, lo:hi] = out[:, lo:hi] * mask if own else mask
        elif key == "mask_inverted":
            out[:, lo:hi] = 1.0 - (1.0 - out[:, lo:hi]) * mask if own else 1.0 - mask
    return out


def patch_model(model, change_map: ChangeMap, reference: Reference = Reference(), whole: torch.Tensor | None = None):
    """A clone of ``model`` that applies ``change_map`` whenever it is sampled (any sampler node).

    ``reference``: the KSampler settings ``denoise`` mode compares against; ``whole``: the whole schedule when
    each sampling call is one part of it (split runs; ``None``: each call's own schedule is the whole one).
    """
    patched = model.clone()
    for kind in (comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, comfy.patcher_extension.WrappersMP.APPLY_MODEL):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)

    def outer(executor, *args, **kwargs):
        return _outer_sample(change_map, reference, whole, executor, *args, **kwargs)

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, outer)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, _apply_model)
    return patched
