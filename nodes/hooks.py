"""Change-map hooks: Differential Diffusion inside ComfyUI's own sampling loop.

How it composes with ComfyUI (v0.8):

* :func:`patch_model` clones the MODEL and registers two keyed wrappers on the clone — nothing
  global is patched and the input model is never touched.
* The ``OUTER_SAMPLE`` wrapper runs once per sampling call. It prepares the run (the change map
  on the latent grid, multiplied by any latent ``noise_mask``, and the start step of every pixel)
  on the sampling device, hands ComfyUI that map as the ``denoise_mask`` so ComfyUI's own
  ``KSamplerX0Inpaint`` does the blending (kept pixels get the original noised with the
  sampler's own noise), installs a per-run ``denoise_mask_function`` that chains any function
  already installed, and after the last step copies never-freed pixels back bit-exactly.
* The ``APPLY_MODEL`` wrapper keeps what the model is told in step with the current threshold
  (ComfyUI builds it once per run): an inpainting model's concat mask (times the conditioning's
  own inpaint mask when it carries one) and the ``denoise_mask`` that LTXV / Wan 2.2-style models
  turn into per-token timesteps. A map that frees every pixel from the first step runs as plain
  KSampler (no mask at all), so it is KSampler bit for bit on every family.

The Differential KSampler nodes' shared body (KSampler semantics around these hooks) is in
``differential_sampling.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import torch

import comfy.model_base
import comfy.model_management
import comfy.patcher_extension
import comfy.samplers

from .core import maps as maps_core
from .core import prefill as prefill_core
from .core import schedule
from .core.errors import InputError

WRAPPER_KEY = "dde_change_map"   # the key of this pack's wrappers on a cloned model
RUN_KEY = "dde_run"
OWN_CONCAT_KEY = "dde_own_concat_mask"
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
    node: str = ""   # the display name of the node that made the spec: errors during sampling name it
    input_name: str = "change_map"
    fractional: bool = False          # schedule.fractional_start: map values between step boundaries blend
    prefill: str = "original"         # core.prefill.PREFILL: what pixels above prefill_above start from
    prefill_above: float = 0.5
    planned: "Planned | None" = None  # the node's plan of this run (see :func:`planned`), reused instead of planning twice


@dataclass(frozen=True)
class Planned:
    """A plan made before sampling (CPU, no latent noise mask) and what it was made for."""

    latent_shape: tuple
    settings: tuple            # (steps, sampler_name, scheduler, denoise)
    run: schedule.DifferentialRun
    sigmas: torch.Tensor       # KSampler's schedule for the settings, as ComfyUI made it (dtype included)


def _denoise_levels(ms, sampler_name: str, scheduler: str, n_steps: int):
    """A vectorised ``M -> KSampler's first level`` for :func:`schedule.start_steps_denoise` (None: unknown scheduler)."""
    if scheduler not in schedule.KNOWN_SCHEDULERS or scheduler not in comfy.samplers.SCHEDULER_HANDLERS:
        return None
    if comfy.samplers.SCHEDULER_HANDLERS[scheduler].handler is not _KNOWN_HANDLERS.get(scheduler):
        return None   # another extension replaced ComfyUI's scheduler: use its own code
    discard = sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    sigma_min, sigma_max = float(ms.sigma_min), float(ms.sigma_max)
    kw = {"sigma_min": sigma_min, "sigma_max": sigma_max}
    if scheduler in ("simple", "ddim_uniform", "beta"):
        kw["table"] = ms.sigmas
    if scheduler == "beta":
        kw["beta_cdf"], kw["beta_ppf"] = _beta_distribution()
    if scheduler in ("normal", "sgm_uniform"):
        t_max, t_min = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
        kw.update(t_max=float(t_max), t_min=float(t_min), zero_end=math.isclose(float(ms.sigma(t_min)), 0, abs_tol=0.00001),
                  sigma_fn=lambda ts: ms.sigma(ts).detach().to("cpu", torch.float32))

    def levels(totals: torch.Tensor):
        try:
            return schedule.denoise_start_levels(scheduler, totals, n_steps, discard, **kw)
        except Exception:   # a model_sampling whose sigma() is scalar-only: ComfyUI's own code decides
            return None

    return levels


#: schedulers whose closed form (schedule.denoise_start_levels) is ComfyUI's own arithmetic, bit for bit: table
#: lookups at indices computed with the same float64 operations, and linear_quadratic's float64 sums; their levels
#: are never recomputed (tests/test_comfy_fast_plan.py holds them equal to ComfyUI's)
EXACT_CLOSED_FORMS = ("simple", "ddim_uniform", "beta", "linear_quadratic")


def _one_level(ms, sampler_name: str, scheduler: str, n_steps: int):
    """``M -> KSampler's first level`` for ``normal`` / ``sgm_uniform``, as ComfyUI's ``normal_scheduler`` computes
    that one level: the same ``torch.linspace`` of timesteps, then ``model_sampling.sigma`` on the one element (its
    loop calls ``sigma`` element by element). A C-speed pass instead of ``M`` Python calls; None for other
    schedulers, or when another extension replaced ComfyUI's function (its own code then decides)."""
    if scheduler not in ("normal", "sgm_uniform") or scheduler not in comfy.samplers.SCHEDULER_HANDLERS:
        return None
    if comfy.samplers.SCHEDULER_HANDLERS[scheduler].handler is not _KNOWN_HANDLERS.get(scheduler):
        return None
    discard = 1 if sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS else 0
    start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
    grow_count = scheduler == "sgm_uniform" or math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001)

    def level(total: int) -> float:
        steps = int(total) + discard                        # KSampler.calculate_sigmas: one more to drop one
        timesteps = torch.linspace(start, end, steps + 1 if grow_count else steps)
        return float(ms.sigma(timesteps[int(total) - n_steps]))   # element -(n + 1) of the (total + 1)-long schedule

    return level


def _beta_distribution():
    """CDF and quantile function of ComfyUI's ``beta`` scheduler's distribution (its default alpha, beta), on float64 tensors."""
    import inspect

    import scipy.stats   # a ComfyUI dependency: its beta scheduler uses the same distribution's quantiles

    params = inspect.signature(comfy.samplers.beta_scheduler).parameters
    alpha, beta = float(params["alpha"].default), float(params["beta"].default)
    return (lambda p: torch.from_numpy(scipy.stats.beta.cdf(p.numpy(), alpha, beta)).to(torch.float64),
            lambda x: torch.from_numpy(scipy.stats.beta.ppf(x.numpy(), alpha, beta)).to(torch.float64))


def _known_handlers() -> dict:
    """ComfyUI's own scheduler functions that :func:`schedule.denoise_start_levels` mirrors."""
    import functools
    import comfy.k_diffusion.sampling as kds

    found = {"simple": comfy.samplers.simple_scheduler, "ddim_uniform": comfy.samplers.ddim_scheduler,
             "normal": comfy.samplers.normal_scheduler, "linear_quadratic": comfy.samplers.linear_quadratic_schedule,
             "kl_optimal": comfy.samplers.kl_optimal_scheduler, "karras": kds.get_sigmas_karras,
             "exponential": kds.get_sigmas_exponential, "beta": comfy.samplers.beta_scheduler}
    sgm = comfy.samplers.SCHEDULER_HANDLERS.get("sgm_uniform")
    if sgm is not None and isinstance(sgm.handler, functools.partial) and sgm.handler.func is comfy.samplers.normal_scheduler \
            and sgm.handler.keywords == {"sgm": True} and not sgm.handler.args:
        found["sgm_uniform"] = sgm.handler
    return found


_KNOWN_HANDLERS = _known_handlers()


def start_steps(spec: ChangeMapSpec, strength_map: torch.Tensor, sigmas: torch.Tensor, patcher,
                closed_form: bool = True, exact: bool = True) -> torch.Tensor:
    """Per-pixel start step for ``spec.mode`` over the full schedule ``sigmas`` (float32, CPU).

    ``closed_form=False`` computes ``denoise`` mode with ComfyUI's own scheduler code for every
    distinct total step count (the reference the closed form is tested against; slow). ``exact=False``:
    the closed-form levels decide alone, none is recomputed by ComfyUI's code near a step's level (for the
    fractional option's boundaries, which a bisection locates to 2^-30 of a map value anyway). Planning checks
    ComfyUI's interrupt between calls of ComfyUI's scheduler code, so Cancel stops it.
    """
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
        known = comfy.samplers.KSampler
        sampler_name = ref.sampler_name if ref.sampler_name in known.SAMPLERS else known.SAMPLERS[0]
        scheduler = ref.scheduler if ref.scheduler in known.SCHEDULERS else known.SCHEDULERS[0]
        made = []
        one = _one_level(ms, sampler_name, scheduler, n_steps) if closed_form else None

        def sigma_start(total_steps: int) -> float:   # ComfyUI's own code (made on first use: it builds a schedule)
            if one is not None:
                return one(total_steps)
            if not made:
                made.append(known(patcher, steps=n_steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                  denoise=1.0, model_options=patcher.model_options))
            return float(made[0].calculate_sigmas(total_steps)[-(n_steps + 1):][0])   # KSampler.set_steps' slice

        fast = _denoise_levels(ms, sampler_name, scheduler, n_steps) if closed_form else None
        return schedule.start_steps_denoise(strength_map, sigmas.tolist(), sigma_start, denoise=ref.denoise,
                                            sigma_starts=fast, trust_closed_form=not exact or scheduler in EXACT_CLOSED_FORMS,
                                            check=comfy.model_management.throw_exception_if_processing_interrupted)
    raise InputError("mode", f"one of {schedule.MODES}", repr(spec.mode), spec.node)


def fraction_thresholds(spec: ChangeMapSpec, sigmas: torch.Tensor, patcher) -> torch.Tensor:
    """The smallest map value free at each step of the full schedule (for the ``fractional`` option)."""
    n_steps = int(sigmas.numel()) - 1
    if spec.mode == "step":
        return schedule.step_thresholds(n_steps)
    return schedule.thresholds_by_bisection(lambda g: start_steps(spec, g, sigmas, patcher, exact=False), n_steps,
                                            check=comfy.model_management.throw_exception_if_processing_interrupted)


def prepare_run(spec: ChangeMapSpec, patcher, latent_shape, sigmas: torch.Tensor, noise_mask, device) -> schedule.DifferentialRun:
    """Fit the map to the latent, combine it with a latent noise mask, compute start steps."""
    whole = spec.global_sigmas if spec.global_sigmas is not None else sigmas
    full = whole.detach().to("cpu", torch.float32).clone()   # some samplers (uni_pc) edit sigmas in place
    known = spec.planned
    if (known is not None and noise_mask is None and known.latent_shape == tuple(latent_shape)
            and torch.equal(known.run.sigmas, full)):
        return _run_on(known.run, device)   # the node planned this very run before sampling
    try:
        g = maps_core.maps_for_latent(spec.maps, latent_shape, spec.input_name)
    except InputError as error:   # raised inside another node's sampling (Apply Change Map + KSampler): name ours
        raise error.at(spec.node) from None
    if noise_mask is not None:
        noise_mask = noise_mask[:, :1].to(g.device, torch.float32)
        if not bool(torch.isfinite(noise_mask).all()):   # a NaN cell would silently never be freed
            raise InputError("latent_image", "a noise_mask of finite values in 0..1",
                             "a noise_mask with NaN or infinite values (the sampled latent's)", spec.node)
        g = g * noise_mask
    g = g.cpu()
    start = start_steps(spec, g, full, patcher)
    if spec.fractional:
        start = schedule.fractional_start(g, start, fraction_thresholds(spec, full, patcher))
    run = schedule.DifferentialRun(start=start, strength_map=g, sigmas=full, n_steps=int(full.numel()) - 1,
                                   softness=float(spec.softness), strength=float(spec.strength),
                                   fractional=bool(spec.fractional))
    return _run_on(run, device)


def _run_on(run: schedule.DifferentialRun, device) -> schedule.DifferentialRun:
    """The same run with its tensors on ``device`` (host to device copies only)."""
    return dataclasses.replace(run, start=run.start.to(device), strength_map=run.strength_map.to(device),
                               sigmas=run.sigmas.to(device))


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


def _settings(steps: int, sampler_name: str, scheduler: str, denoise: float) -> tuple:
    return int(steps), str(sampler_name), str(scheduler), float(denoise)


def plan(model, spec: ChangeMapSpec, latent_shape, steps: int, sampler_name: str, scheduler: str,
         denoise: float = 1.0) -> schedule.DifferentialRun:
    """What a Differential KSampler run with these settings will do, computed without sampling (CPU).

    Returns ``spec.planned``'s run when it was made for the same latent shape and settings.
    """
    known = spec.planned
    if (known is not None and known.latent_shape == tuple(latent_shape)
            and known.settings == _settings(steps, sampler_name, scheduler, denoise)):
        return known.run
    full = ksampler_sigmas(model, steps, sampler_name, scheduler, denoise, device="cpu")
    return _plan_on(model, spec, latent_shape, full, sampler_name, scheduler, denoise)


def _plan_on(model, spec: ChangeMapSpec, latent_shape, full: torch.Tensor, sampler_name: str, scheduler: str,
             denoise: float) -> schedule.DifferentialRun:
    if full.numel() < 2:   # denoise 0: nothing is sampled, nothing changes
        full = torch.zeros(1)
    spec = dataclasses.replace(spec, global_sigmas=full, reference=Reference(sampler_name, scheduler, float(denoise)),
                               planned=None)
    return prepare_run(spec, model, latent_shape, full, None, "cpu")


def planned(model, spec: ChangeMapSpec, latent_shape, steps: int, sampler_name: str, scheduler: str,
            denoise: float = 1.0) -> ChangeMapSpec:
    """``spec`` carrying its plan for these settings: a node's checks and its run then plan once.

    ``latent_shape``: the shape the sampler will see (after ComfyUI's fix of empty latents). The run
    reuses the plan only when it samples that shape and schedule without a latent noise mask
    (``prepare_run`` checks); otherwise it plans as usual.
    """
    full = ksampler_sigmas(model, steps, sampler_name, scheduler, denoise, device="cpu")
    run = _plan_on(model, spec, latent_shape, full, sampler_name, scheduler, denoise)
    return dataclasses.replace(spec, planned=Planned(tuple(latent_shape), _settings(steps, sampler_name, scheduler, denoise),
                                                     run, full))


def schedule_for(model, spec: ChangeMapSpec, steps: int, sampler_name: str, scheduler: str,
                 denoise: float = 1.0) -> torch.Tensor:
    """KSampler's whole schedule for these settings on the CPU (a copy of the planned one when ``spec`` has it)."""
    known = spec.planned
    if known is not None and known.settings == _settings(steps, sampler_name, scheduler, denoise):
        return known.sigmas.clone()
    return ksampler_sigmas(model, steps, sampler_name, scheduler, denoise, device="cpu")


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
        raise InputError("latent_image", "a single latent (not a nested multi-part latent)",
                         f"{len(latent_shapes)} packed latents", spec.node)
    patcher = guider.model_patcher
    device = patcher.load_device
    # the one host read of a run: this run's levels (already on the CPU for the pack's own nodes)
    local = sigmas.detach().to("cpu", torch.float32).clone()
    host_run = prepare_run(spec, patcher, latent_image.shape, local, denoise_mask, "cpu")
    if (denoise_mask is None and spec.prefill == "original" and host_run.strength >= 1.0
            and not bool((host_run.start > 0).any())):
        # every pixel is free from the first step: this is KSampler's own run (no mask at all), so models
        # that read the mask (inpaint concat, per-token timesteps) are told exactly what KSampler tells them
        return executor(noise, latent_image, sampler, sigmas, None, callback, disable_pbar, seed, latent_shapes=latent_shapes)
    run = _run_on(host_run, device)
    options = guider.model_options  # the per-run copy made by CFGGuider.sample
    previous = options.get("denoise_mask_function")
    options["denoise_mask_function"] = _mask_function(run, previous)
    transformer_options = options.setdefault("transformer_options", {})
    transformer_options[RUN_KEY] = run
    # the conditioning brings its own inpaint mask (InpaintModelConditioning): the concat mask combines with it
    transformer_options[OWN_CONCAT_KEY] = any("concat_mask" in c for conds in guider.conds.values() for c in conds)
    mask_shape = (latent_image.shape[0], latent_image.shape[1]) + tuple(latent_image.shape[2:])
    full_mask = run.strength_map.to(latent_image.dtype).expand(mask_shape)
    fully_denoised = float(local[-1]) == 0.0   # read before sampling: uni_pc rewrites a final 0 in place
    start_latent = _prefilled(spec, run, latent_image, patcher, seed)
    skip = skippable_steps(host_run, local, sampler) if previous is None else 0
    if skip:
        sampler = _skipping(sampler, skip)
    out = executor(noise, start_latent, sampler, sigmas, full_mask, callback, disable_pbar, seed, latent_shapes=latent_shapes)
    if fully_denoised:   # never-freed pixels come back bit-exact (a no-op where none is kept: no host read)
        out = torch.where(run.kept.to(out.device), latent_image.to(out.device, out.dtype), out)
    return out


def _one_step_samplers() -> tuple:
    """k-diffusion sampler functions whose state is ``x`` alone and that draw no noise (with no extra options)."""
    import comfy.k_diffusion.sampling as kds

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


def _skipping(sampler, skip: int):
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
    mask = run.mask(t.reshape(chunks, b)[0])
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


def patch_model(model, spec: ChangeMapSpec):
    """A clone of ``model`` that applies ``spec`` whenever it is sampled (any sampler node)."""
    patched = model.clone()
    for kind in (comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, comfy.patcher_extension.WrappersMP.APPLY_MODEL):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)

    def outer(executor, *args, **kwargs):
        return _outer_sample(spec, executor, *args, **kwargs)

    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, outer)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY, _apply_model)
    return patched
