"""The plan of a run: one owner for a change map, what it is planned for, and the plan.

* :class:`ChangeMap` — the user's intent, validated once: the maps (``(B,H,W)``, white = change) and how
  they apply (mode, softness, strength, fractional, prefill). Frozen; it memoises its plans.
* :class:`PlanKey` — everything a plan depends on: the latent shape the sampler sees, the whole schedule
  (all parts of a split run), the reference KSampler settings (``denoise`` mode), the model's sampling and
  the latent noise mask as ComfyUI hands it to the sampler.
* :class:`Plan` — the per-pixel start steps for that key (:class:`core.schedule.DifferentialRun`, on the
  CPU) and what the run needs to know before it starts.

``change_map.plan(model, key)`` plans once per key: a node plans before sampling (for its messages) and
the sampling hooks (``hooks.py``) find that plan when they see the same key, noise mask or not.

The start step of each mode comes from ``core.schedule``; ``denoise`` mode asks ComfyUI's own schedulers
where ``KSampler(denoise = g)`` starts, through their closed forms (``core.closed_form``) when the running
ComfyUI's scheduler is the one the closed form mirrors.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field

import torch

import comfy.k_diffusion.sampling as kds
import comfy.model_management
import comfy.sampler_helpers
import comfy.samplers

from .comfy_glue import ksampler_sigmas
from .core import closed_form
from .core import maps as maps_core
from .core import schedule
from .core.errors import InputError
from .core.prefill import PREFILL
from .core.validate import check_choice, check_number

#: plans a change map keeps (one per key: a node's run, a split's parts, a model patch used by a few samplers)
MEMO_SIZE = 4


@dataclass(frozen=True)
class Reference:
    """What ``denoise`` mode compares against: KSampler with this sampler/scheduler/denoise."""

    sampler_name: str = "euler"
    scheduler: str = "normal"
    denoise: float = 1.0


@dataclass(frozen=True, eq=False)
class PlanKey:
    """What a plan depends on (compare with :meth:`matches`; tensors are CPU float32 copies)."""

    latent_shape: tuple
    schedule: torch.Tensor          # the whole schedule s_0..s_N as ComfyUI made it (dtype kept: the run samples it)
    reference: Reference
    model_sampling: object          # the model's sampling object (compared by identity)
    noise_mask: torch.Tensor | None  # (B,1,...) as the sampler gets it (ComfyUI's prepare_mask), CPU float32

    @classmethod
    def of(cls, model, latent_shape, schedule_: torch.Tensor, reference: Reference = Reference(),
           noise_mask: torch.Tensor | None = None) -> "PlanKey":
        """The key of a run: ``noise_mask`` is the mask ComfyUI hands the sampler (already fitted to the latent)."""
        mask = None if noise_mask is None else noise_mask[:, :1].detach().to("cpu", torch.float32)
        return cls(tuple(latent_shape), schedule_.detach().cpu(), reference, model.get_model_object("model_sampling"),
                   mask)

    @classmethod
    def for_ksampler(cls, model, latent_shape, steps: int, sampler_name: str, scheduler: str, denoise: float = 1.0,
                     noise_mask: torch.Tensor | None = None) -> "PlanKey":
        """The key of a KSampler-style run: KSampler's whole schedule for these settings (its own code, on the CPU)
        and the latent's ``noise_mask`` prepared as ComfyUI prepares it for the sampler."""
        whole = ksampler_sigmas(model, steps, sampler_name, scheduler, denoise, device="cpu")
        if noise_mask is not None:
            noise_mask = comfy.sampler_helpers.prepare_mask(noise_mask, tuple(latent_shape), "cpu")
        return cls.of(model, latent_shape, whole, Reference(sampler_name, scheduler, float(denoise)), noise_mask)

    @property
    def levels(self) -> torch.Tensor:
        """The whole schedule as the plan uses it (CPU float32; no step at all is one level 0)."""
        levels = self.schedule.to(torch.float32)
        return levels if levels.numel() >= 2 else torch.zeros(1)

    def matches(self, other: "PlanKey") -> bool:
        return (self.latent_shape == other.latent_shape and self.reference == other.reference
                and self.model_sampling is other.model_sampling and torch.equal(self.levels, other.levels)
                and (self.noise_mask is None) == (other.noise_mask is None)
                and (self.noise_mask is None or torch.equal(self.noise_mask, other.noise_mask)))


@dataclass(frozen=True)
class Plan:
    """A change map's plan for one key: start steps and strengths on the latent grid (CPU)."""

    key: PlanKey
    run: schedule.DifferentialRun
    everything_free: bool   # every pixel is free from the first step at full strength (a plain KSampler run)


@dataclass(frozen=True, eq=False)
class ChangeMap:
    """A change map and how it applies. ``maps``: validated ``(B,H,W)`` float32, white = change.

    ``node`` / ``input_name``: what an error during sampling names (the map may be applied inside another
    node's sampling: Apply Change Map + KSampler).
    """

    maps: torch.Tensor
    mode: str = "step"
    softness: float = 0.0
    strength: float = 1.0
    fractional: bool = False          # schedule.fractional_start: map values between step boundaries blend
    prefill: str = "original"         # core.prefill.PREFILL: what pixels above prefill_above start from
    prefill_above: float = 0.5
    node: str = ""
    input_name: str = "change_map"
    _plans: list = field(default_factory=list, init=False, repr=False)

    @classmethod
    def read(cls, change_map, mode: str = "step", invert: bool = False, strength: float = 1.0, softness: float = 0.0,
             fractional: bool = False, prefill: str = "original", prefill_above: float = 0.5,
             node: str = "") -> "ChangeMap":
        """The node inputs of a change map, validated (errors name the input)."""
        return cls(maps=maps_core.read_change_map(change_map, invert), mode=check_choice(mode, schedule.MODES, "mode"),
                   softness=check_number(softness, "softness", 0.0, 1.0), strength=check_number(strength, "strength", 0.0, 1.0),
                   fractional=bool(fractional), prefill=check_choice(prefill, PREFILL, "prefill"),
                   prefill_above=check_number(prefill_above, "prefill_above", 0.0, 1.0), node=node)

    def plan(self, model, key: PlanKey) -> Plan:
        """The plan for ``key`` (made on the first call with that key, then the same value)."""
        for known in self._plans:
            if known.key.matches(key):
                return known
        made = _make_plan(self, model, key)
        self._plans.insert(0, made)
        del self._plans[MEMO_SIZE:]
        return made


def _make_plan(change_map: ChangeMap, model, key: PlanKey) -> Plan:
    """Fit the map to the latent, combine it with the noise mask, compute start steps (CPU)."""
    full = key.levels.clone()
    try:
        g = maps_core.maps_for_latent(change_map.maps, key.latent_shape, change_map.input_name)
    except InputError as error:   # raised inside another node's sampling (Apply Change Map + KSampler): name ours
        raise error.at(change_map.node) from None
    if key.noise_mask is not None:
        if not bool(torch.isfinite(key.noise_mask).all()):   # a NaN cell would silently never be freed
            raise InputError("latent_image", "a noise_mask of finite values in 0..1",
                             "a noise_mask with NaN or infinite values (the sampled latent's)", change_map.node)
        g = g * key.noise_mask.to(g.device)
    g = g.cpu()
    start = start_steps(change_map.mode, g, full, model, key.reference)
    if change_map.fractional:
        start = schedule.fractional_start(g, start, fraction_thresholds(change_map.mode, full, model, key.reference))
    run = schedule.DifferentialRun(start=start, strength_map=g, sigmas=full, n_steps=int(full.numel()) - 1,
                                   softness=float(change_map.softness), strength=float(change_map.strength),
                                   fractional=bool(change_map.fractional))
    everything_free = run.strength >= 1.0 and not bool((run.start > 0).any())
    return Plan(key, run, everything_free)


# -- start steps of each mode, with the model's sampling ------------------------------------------------

def start_steps(mode: str, g: torch.Tensor, sigmas: torch.Tensor, patcher, reference: Reference = Reference(),
                closed_form_levels: bool = True, exact: bool = True) -> torch.Tensor:
    """Per-pixel start step for ``mode`` over the whole schedule ``sigmas`` (float32, CPU).

    ``closed_form_levels=False`` computes ``denoise`` mode with ComfyUI's own scheduler code for every
    distinct total step count (the reference the closed form is tested against; slow). ``exact=False``:
    the closed-form levels decide alone, none is recomputed by ComfyUI's code near a step's level (for the
    fractional option's boundaries, which a bisection locates to 2^-30 of a map value anyway). Planning checks
    ComfyUI's interrupt between calls of ComfyUI's scheduler code, so Cancel stops it.
    """
    n_steps = int(sigmas.numel()) - 1
    if mode == "step":
        return schedule.start_steps_step(g, n_steps)
    ms = patcher.get_model_object("model_sampling")
    if mode == "timestep":
        sig = sigmas.to(torch.float32).cpu()
        sigma_to = float(ms.sigma_min)
        if float(sig[-1]) > sigma_to:
            sigma_to = float(sig[-1])
        ts = ms.timestep(sig[:-1]).to(torch.float64)
        ts_from = float(ms.timestep(sig[:1]))
        ts_to = float(ms.timestep(torch.tensor([sigma_to], dtype=torch.float32)))
        return schedule.start_steps_thresholds(g, schedule.timestep_thresholds(ts.tolist(), ts_from, ts_to))
    if mode == "denoise":
        known = comfy.samplers.KSampler
        sampler_name = reference.sampler_name if reference.sampler_name in known.SAMPLERS else known.SAMPLERS[0]
        scheduler = reference.scheduler if reference.scheduler in known.SCHEDULERS else known.SCHEDULERS[0]
        made = []
        one = _one_level(ms, sampler_name, scheduler, n_steps) if closed_form_levels else None

        def sigma_start(total_steps: int) -> float:   # ComfyUI's own code (made on first use: it builds a schedule)
            if one is not None:
                return one(total_steps)
            if not made:
                made.append(known(patcher, steps=n_steps, device="cpu", sampler=sampler_name, scheduler=scheduler,
                                  denoise=1.0, model_options=patcher.model_options))
            return float(made[0].calculate_sigmas(total_steps)[-(n_steps + 1):][0])   # KSampler.set_steps' slice

        fast = denoise_levels(ms, sampler_name, scheduler, n_steps) if closed_form_levels else None
        return schedule.start_steps_denoise(g, sigmas.tolist(), sigma_start, denoise=reference.denoise,
                                            sigma_starts=fast,
                                            trust_closed_form=not exact or scheduler in EXACT_CLOSED_FORMS,
                                            check=comfy.model_management.throw_exception_if_processing_interrupted)
    raise InputError("mode", f"one of {schedule.MODES}", repr(mode))


def fraction_thresholds(mode: str, sigmas: torch.Tensor, patcher, reference: Reference = Reference()) -> torch.Tensor:
    """The smallest map value free at each step of the whole schedule (for the ``fractional`` option)."""
    n_steps = int(sigmas.numel()) - 1
    if mode == "step":
        return schedule.step_thresholds(n_steps)
    return schedule.thresholds_by_bisection(lambda g: start_steps(mode, g, sigmas, patcher, reference, exact=False),
                                            n_steps, check=comfy.model_management.throw_exception_if_processing_interrupted)


# -- denoise mode: KSampler's first level, from the closed form of ComfyUI's own scheduler -----------------

def denoise_levels(ms, sampler_name: str, scheduler: str, n_steps: int):
    """A vectorised ``M -> KSampler's first level`` for ``schedule.start_steps_denoise`` (None: the closed form
    does not know this scheduler, or another extension replaced ComfyUI's own)."""
    if scheduler not in closed_form.KNOWN_SCHEDULERS or scheduler not in comfy.samplers.SCHEDULER_HANDLERS:
        return None
    if comfy.samplers.SCHEDULER_HANDLERS[scheduler].handler is not _KNOWN_HANDLERS.get(scheduler):
        return None
    discard = sampler_name in comfy.samplers.KSampler.DISCARD_PENULTIMATE_SIGMA_SAMPLERS
    kw = {"sigma_min": float(ms.sigma_min), "sigma_max": float(ms.sigma_max)}
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
            return closed_form.denoise_start_levels(scheduler, totals, n_steps, discard, **kw)
        except Exception:   # a model_sampling whose sigma() is scalar-only: ComfyUI's own code decides
            return None

    return levels


#: schedulers whose closed form (closed_form.denoise_start_levels) is ComfyUI's own arithmetic, bit for bit: table
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
    import scipy.stats   # a ComfyUI dependency: its beta scheduler uses the same distribution's quantiles

    params = inspect.signature(comfy.samplers.beta_scheduler).parameters
    alpha, beta = float(params["alpha"].default), float(params["beta"].default)
    return (lambda p: torch.from_numpy(scipy.stats.beta.cdf(p.numpy(), alpha, beta)).to(torch.float64),
            lambda x: torch.from_numpy(scipy.stats.beta.ppf(x.numpy(), alpha, beta)).to(torch.float64))


def _known_handlers() -> dict:
    """ComfyUI's own scheduler functions that ``closed_form.denoise_start_levels`` mirrors."""
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
