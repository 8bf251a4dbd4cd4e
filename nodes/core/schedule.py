"""When each pixel of a change map is allowed to change: thresholds, start steps, step masks.

Differential Diffusion samples ``N`` steps at noise levels ``s_0 > s_1 > ... > s_N = 0``. A
pixel with change strength ``g`` (0..1) is *kept* — replaced by the original latent noised to
the current level — until its **start step** ``k(g)``, and sampled freely from then on. The
three threshold modes differ only in how ``k(g)`` is computed:

``step`` (the paper)
    free at step ``i`` iff ``i >= N (1 - g)``: a pixel gets ``floor(g N)`` free steps whatever the
    schedule. ``k = ceil(N (1 - g))``.
``timestep`` (ComfyUI's built-in ``DifferentialDiffusion``)
    free at step ``i`` iff ``g >= t_i`` with ``t_i = (ts(s_i) - ts_to) / (ts_from - ts_to)`` on the
    model's own timestep axis; on shifted flow schedules a grey frees far fewer steps.
``denoise``
    a pixel of value ``g`` starts at the first step whose noise level is at or below the level
    where ``KSampler`` with ``denoise = g`` (same sampler, scheduler, steps) starts. A grey means
    the same thing as img2img strength on every model family.

``fractional`` (an option on top of any mode): the start step becomes a real number ``c = k - f``
where ``f`` is how far ``g`` lies from the lower towards the upper boundary of its step (``theta_k``
and ``theta_{k-1}``, the smallest map values free at steps ``k`` and ``k - 1``; ``theta_N = 0``).
The step before ``k`` then runs with mask ``f`` (a blend of the freed and the kept latent), so
few-step models render a grey between two step boundaries as a grey. At exact boundaries ``f = 0``
and the result is the mode's own; ``g = 0`` is still never freed.

In every mode a pixel with ``g == 0`` is never freed (the built-in node frees it at the last
step), and once freed a pixel stays free. Start steps are computed once per run; the per-step
mask is a comparison on the device with no host round trip.

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

NEVER = math.inf
MODES = ("step", "denoise", "timestep")
#: relative tolerance when comparing noise levels (float32 schedules vs. float64 maths)
SIGMA_RTOL = 1e-5
#: slack when rounding N * (1 - g): float32 map values are not exact decimals (0.7 -> 0.69999998)
STEP_SLACK = 1e-4


def _finish(k: torch.Tensor, g: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Common tail: start steps >= N or g == 0 mean never; result float32 on g's device."""
    k = k.to(torch.float64)
    k = torch.where((k >= n_steps) | (g <= 0), torch.full_like(k, NEVER), k)
    return k.to(torch.float32)


def start_steps_step(g: torch.Tensor, n_steps: int) -> torch.Tensor:
    """``step`` mode: ``k = ceil(N (1 - g))``, so a pixel gets ``floor(g N)`` free steps."""
    gd = g.to(torch.float64)
    k = torch.ceil(n_steps * (1.0 - gd) - STEP_SLACK).clamp(min=0)
    return _finish(k, gd, n_steps)


def start_steps_thresholds(g: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Free at the first step ``i`` with ``g >= thresholds[i]`` (and never when ``g == 0``).

    ``thresholds`` holds one value per step; it need not be monotone (a running minimum is
    taken, since a freed pixel stays free).
    """
    n_steps = int(thresholds.numel())
    if n_steps == 0:
        return torch.full_like(g, NEVER, dtype=torch.float32)
    t = torch.cummin(thresholds.to(torch.float64).flatten().cpu(), dim=0).values
    ascending = torch.flip(t, dims=[0]).contiguous()
    gd = g.to(torch.float64)
    flat = gd.flatten().cpu().contiguous()
    not_free = n_steps - torch.searchsorted(ascending, flat, right=True)
    k = not_free.to(torch.float64).reshape(g.shape).to(g.device)
    return _finish(k, gd, n_steps)


def timestep_thresholds(timesteps: Sequence[float], ts_from: float, ts_to: float) -> torch.Tensor:
    """The built-in node's threshold ``(ts - ts_to) / (ts_from - ts_to)`` for each step's timestep."""
    ts = torch.as_tensor(list(timesteps), dtype=torch.float64)
    span = ts_from - ts_to
    if span == 0:
        return torch.zeros_like(ts)
    return (ts - ts_to) / span


#: a closed-form level this close (relative) to a decision boundary is recomputed by the exact fallback
LEVEL_CHECK_RTOL = 4e-6
#: the largest total step count ``M`` whose level the exact fallback computes (its cost grows with ``M``: ComfyUI
#: builds the whole ``M``-step schedule). Beyond it (effective strengths below ``N / 2^22``) a closed-form level
#: decides alone, and without a closed form ``M`` is planned as this many steps.
EXACT_MAX_TOTAL = 2 ** 22
#: the most schedule levels (the sum of ``M`` over the levels recomputed) one plan asks the exact fallback for,
#: smallest ``M`` first; past it the closed form decides alone (a map crafted to sit on step boundaries)
EXACT_BUDGET = 2 ** 24


def start_steps_denoise(g: torch.Tensor, sigmas: Sequence[float], sigma_start: Callable[[int], float],
                        denoise: float = 1.0,
                        sigma_starts: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
                        trust_closed_form: bool = False, check: Callable[[], None] | None = None) -> torch.Tensor:
    """``denoise`` mode start steps.

    ``sigmas`` is the run's full schedule ``s_0..s_N``. ``sigma_start(M)`` must return the first
    noise level of KSampler's schedule with ``M`` total steps truncated to the last ``N`` — i.e.
    what ``KSampler(steps=N, denoise=d)`` starts from when ``int(N / d) == M``. A pixel with
    effective strength ``e = g * denoise`` uses ``M = int(N / e)`` (KSampler's own rounding, in
    float64), or the full schedule when ``e > 0.9999`` (KSampler's own cut-off), and starts at the
    first step with ``s_i <= sigma_start(M)``.

    ``sigma_start`` is called only for the distinct ``M`` that the map needs, by a binary search
    per step (it assumes a later start for more total steps, which holds for ComfyUI's
    schedulers). ``sigma_starts``, when given, returns the levels of all distinct ``M`` at once
    (e.g. ``closed_form.denoise_start_levels``; ``None`` = unknown): those are used instead, and only
    levels within :data:`LEVEL_CHECK_RTOL` of a decision boundary are recomputed by ``sigma_start``,
    so the start steps are those ``sigma_start`` alone gives. ``trust_closed_form``: nothing is recomputed (the
    closed form is ``sigma_start``'s own arithmetic, bit for bit, or the caller accepts a start step one off
    where a level lies within that tolerance of a step's level).

    Cost, by design: the closed form is vectorised over the distinct ``M`` and the steps (``O(U + N log U)``
    for ``U`` distinct map values), whatever ``M``; ``sigma_start`` costs what building an ``M``-step schedule
    costs, so it is never asked for ``M`` above :data:`EXACT_MAX_TOTAL`, nor for more than :data:`EXACT_BUDGET`
    levels in all when a closed form exists (see there). ``check`` is called before every ``sigma_start`` call
    (ComfyUI's interrupt check: a Cancel stops planning between two calls).
    """
    s = [float(v) for v in sigmas]
    n_steps = len(s) - 1
    gd = g.to(torch.float64)
    if n_steps <= 0:
        return torch.full_like(g, NEVER, dtype=torch.float32)
    # every pixel of one value starts at the same step: work on the distinct values only
    vals, where_val = torch.unique(gd.flatten().cpu(), sorted=True, return_inverse=True)
    eff = vals * float(denoise)
    k = torch.full_like(eff, NEVER)
    k = torch.where(eff > 0.9999, torch.zeros_like(eff), k)
    partial = (eff > 0) & (eff <= 0.9999)
    if bool(partial.any()):
        total = torch.floor(n_steps / eff[partial]).clamp(max=2 ** 40).to(torch.int64)
        fast = None
        if sigma_starts is not None:
            uniq, inverse = torch.unique(total, sorted=True, return_inverse=True)
            fast = sigma_starts(uniq)
        targets = torch.tensor(s[:-1], dtype=torch.float64) / (1.0 + SIGMA_RTOL)
        if fast is not None:
            levels = fast.to("cpu", torch.float64).flatten() if trust_closed_form and bool(torch.isfinite(fast).all()) \
                else _checked_levels(fast, uniq, targets, sigma_start, check)
            b = _free_counts(levels, targets)
        else:   # no closed form: ComfyUI's own schedules, at most EXACT_MAX_TOTAL steps long
            uniq, inverse = torch.unique(total.clamp(max=EXACT_MAX_TOTAL), sorted=True, return_inverse=True)
            b = _free_counts_lazy(uniq.tolist(), targets.tolist(), sigma_start, check)
        b = torch.cummax(b, dim=0).values
        first = torch.searchsorted(b, inverse.flatten(), right=True).reshape(inverse.shape)
        k[partial] = first.to(torch.float64)
    k = k[where_val].reshape(g.shape).to(g.device)
    return _finish(k, gd, n_steps)


def _checked_levels(fast: torch.Tensor, uniq: torch.Tensor, targets: torch.Tensor, sigma_start,
                    check: Callable[[], None] | None = None) -> torch.Tensor:
    """Closed-form levels, with those within :data:`LEVEL_CHECK_RTOL` of a boundary recomputed exactly (``M`` up to
    :data:`EXACT_MAX_TOTAL`, within :data:`EXACT_BUDGET`; non-finite levels always: ``uniq`` is ascending)."""
    lv = fast.to("cpu", torch.float64).flatten().clone()
    ascending = torch.sort(targets).values
    pos = torch.searchsorted(ascending, lv).clamp(1, max(int(ascending.numel()) - 1, 1))
    lo = ascending[pos - 1]
    hi = ascending[pos.clamp(max=int(ascending.numel()) - 1)]
    gap = torch.minimum((lv / lo - 1.0).abs(), (lv / hi - 1.0).abs())
    totals = uniq.flatten().cpu()
    near = (gap < LEVEL_CHECK_RTOL) & (totals <= EXACT_MAX_TOTAL)
    near &= torch.cumsum(torch.where(near, totals, torch.zeros_like(totals)), 0) <= EXACT_BUDGET   # smallest M first
    for j in (near | ~torch.isfinite(lv)).nonzero().flatten().tolist():
        if check is not None:
            check()
        lv[j] = float(sigma_start(int(uniq[j])))
    return lv


def _free_counts(levels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per step, the binary search of :func:`_free_counts_lazy`, vectorised over the steps."""
    u = int(levels.numel())
    if u and bool((levels[1:] <= levels[:-1]).all()):   # non-increasing (ComfyUI's schedulers): one search does it
        return u - torch.searchsorted(torch.flip(levels, dims=[0]).contiguous(), targets.contiguous(), right=False)
    lo = torch.zeros(targets.shape, dtype=torch.int64)
    hi = torch.full(targets.shape, u, dtype=torch.int64)
    for _ in range(u.bit_length() + 1):
        active = lo < hi
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        above = levels[mid.clamp(max=u - 1)] >= targets
        lo = torch.where(active & above, mid + 1, lo)
        hi = torch.where(active & ~above, mid, hi)
    return lo


def _free_counts_lazy(uniq: list, targets: list, sigma_start, check: Callable[[], None] | None = None) -> torch.Tensor:
    """How many of the distinct ``M`` (smallest first) are free at each step, asking ``sigma_start`` lazily."""
    memo: dict[int, float] = {}

    def level(j: int) -> float:
        m = uniq[j]
        if m not in memo:
            if check is not None:
                check()
            memo[m] = float(sigma_start(m))
        return memo[m]

    bounds = []
    for target in targets:
        lo, hi = 0, len(uniq)
        while lo < hi:
            mid = (lo + hi) // 2
            if level(mid) >= target:
                lo = mid + 1
            else:
                hi = mid
        bounds.append(lo)
    return torch.tensor(bounds, dtype=torch.int64)
def step_thresholds(n_steps: int) -> torch.Tensor:
    """``step`` mode's boundaries: the smallest map value free at step ``i`` is ``(N - i) / N``."""
    return (n_steps - torch.arange(n_steps, dtype=torch.float64)) / max(n_steps, 1)


def thresholds_by_bisection(start_fn: Callable[[torch.Tensor], torch.Tensor], n_steps: int,
                            iterations: int = 30, floor: float = 2.0 ** -10,
                            check: Callable[[], None] | None = None) -> torch.Tensor:
    """The smallest map value free at each step, for any monotone ``start_fn(g) -> start steps``.

    All ``N`` boundaries are bisected together (``iterations`` calls of ``start_fn`` on ``N``
    values, float64) between ``floor`` and 1: a step that ``g = floor`` already reaches gets
    ``floor`` (``denoise`` mode would otherwise ask for schedules of ``N / g`` steps as ``g -> 0``),
    a step that even ``g = 1`` does not reach gets ``inf``. ``check`` is called before every iteration.
    """
    idx = torch.arange(n_steps, dtype=torch.float64)
    lo = torch.full((n_steps,), float(floor), dtype=torch.float64)
    hi = torch.ones(n_steps, dtype=torch.float64)
    reachable = start_fn(hi.clone()).to(torch.float64).cpu() <= idx
    hi = torch.where(start_fn(lo.clone()).to(torch.float64).cpu() <= idx, lo, hi)
    for _ in range(iterations):
        if check is not None:
            check()
        mid = (lo + hi) / 2
        free = start_fn(mid).to(torch.float64).cpu() <= idx
        hi = torch.where(free, mid, hi)
        lo = torch.where(free, lo, mid)
    return torch.where(reachable, hi, torch.full_like(hi, math.inf))


def fractional_start(g: torch.Tensor, start: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Real start positions ``c = k - f`` (``fractional`` option; see the module docstring).

    ``start``: the mode's integer start steps ``k`` (``inf`` = never); ``thresholds``: ``theta_0..
    theta_{N-1}`` (non-increasing, ``inf`` = unreachable). ``f = clamp((g - theta_k) / (theta_{k-1}
    - theta_k), 0, 1)`` with ``theta_N = 0``, so a never-freed pixel with ``g > 0`` gets ``c = N - f``
    (its last step blended by ``f``). ``k = 0`` stays 0, ``g == 0`` stays never. float32.
    """
    n = int(thresholds.numel())
    theta = torch.cat([thresholds.to(torch.float64).flatten().cpu(), torch.zeros(1, dtype=torch.float64)])
    gd = g.to(torch.float64).cpu()
    k = torch.where(torch.isfinite(start.cpu()), start.cpu().to(torch.float64), torch.full_like(gd, float(n)))
    k = k.clamp(0, n).to(torch.int64)
    low = theta[k]
    high = theta[(k - 1).clamp(min=0)]
    frac = torch.nan_to_num(((gd - low) / (high - low)).clamp(0.0, 1.0), nan=0.0)
    c = torch.where(k == 0, torch.zeros_like(gd), k.to(torch.float64) - frac)
    c = torch.where(gd <= 0, torch.full_like(gd, NEVER), c)
    return c.to(torch.float32).to(start.device)


def step_index(sigma: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Index of the step a model call at ``sigma`` belongs to, on the device, without a sync.

    ``sigmas`` is the schedule of this run (``s_0..s_n``); a call at ``s_i`` or between ``s_i``
    and ``s_{i+1}`` (the extra calls of Heun, DPM-2, SDE samplers) belongs to step ``i``.
    For split sampling pass the whole schedule, so every part maps a noise level to the same
    step. Returns shape ``sigma.shape`` (one index per batch row).
    """
    sig = sigma.reshape(-1, 1).to(sigmas.dtype)
    levels = sigmas[:-1].reshape(1, -1) if sigmas.numel() > 1 else sigmas.reshape(1, -1)
    idx = (levels >= sig * (1.0 - SIGMA_RTOL)).sum(dim=1) - 1
    return idx.clamp(min=0).reshape(sigma.shape)


def step_mask(start: torch.Tensor, strength_map: torch.Tensor, index: torch.Tensor, n_steps: int,
              softness: float = 0.0, strength: float = 1.0, fractional: bool = False) -> torch.Tensor:
    """The blending mask at step ``index``: 1 = sample freely, 0 = keep the (noised) original.

    ``start`` and ``strength_map`` are ``(B,1,...)``; ``index`` has one entry per batch row (or
    one for all). ``softness`` > 0 fades a pixel in over ``softness * N`` steps before its start
    step instead of switching at once. ``strength`` < 1 mixes in the raw map like the built-in
    node's ``strength``: ``strength * mask + (1 - strength) * map``. ``fractional``: ``start``
    holds real start positions (:func:`fractional_start`) and the mask is
    ``clamp(1 - (start - index) / max(softness N, 1), 0, 1)``. Never-freed pixels (map 0)
    stay 0 in every case.
    """
    idx = index.reshape(-1, *([1] * (start.ndim - 1))).to(start.dtype)
    if fractional:
        width = max(float(softness) * n_steps, 1.0)
        mask = torch.nan_to_num(torch.clamp(1.0 - (start - idx) / width, 0.0, 1.0), nan=0.0)
    elif softness > 0:
        width = max(float(softness) * n_steps, 1e-6)
        mask = torch.clamp(1.0 - (start - idx) / width, 0.0, 1.0)
        mask = torch.nan_to_num(mask, nan=0.0)
    else:
        mask = (start <= idx).to(start.dtype)
    if strength < 1.0:
        mask = strength * mask + (1.0 - strength) * strength_map
    return mask


def free_steps(start: torch.Tensor, n_steps: int) -> torch.Tensor:
    """How many steps each pixel is sampled freely (``N - k``; 0 for never-freed pixels)."""
    return torch.where(torch.isfinite(start), n_steps - start, torch.zeros_like(start))


@dataclass
class DifferentialRun:
    """Everything one sampling run needs per step, prepared once on the sampling device.

    ``start``/``strength_map``: ``(B,1,h,w)`` (or ``(B,1,T,h,w)``) float32; ``sigmas``: the whole
    schedule ``s_0..s_N`` of ``n_steps`` steps — also when this run samples only part of it (split
    sampling), so a model call at a given noise level maps to the same step in every part.
    """

    start: torch.Tensor
    strength_map: torch.Tensor
    sigmas: torch.Tensor
    n_steps: int
    softness: float = 0.0
    strength: float = 1.0
    fractional: bool = False   # ``start`` holds real start positions (fractional_start)
    _copies: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def on(self, device) -> "DifferentialRun":
        """This run with its tensors on ``device``: itself when they are there, else a copy made once per device
        and reused (a model spread over several devices asks for its step mask on each)."""
        device = torch.device(device)
        if self.start.device == device:
            return self
        if device not in self._copies:
            self._copies[device] = DifferentialRun(self.start.to(device), self.strength_map.to(device),
                                                   self.sigmas.to(device), self.n_steps, self.softness, self.strength,
                                                   self.fractional)
        return self._copies[device]

    def index(self, sigma: torch.Tensor) -> torch.Tensor:
        return step_index(sigma, self.sigmas)

    def mask(self, sigma: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        m = step_mask(self.start, self.strength_map, self.index(sigma), self.n_steps, self.softness, self.strength,
                      self.fractional)
        return m if dtype is None else m.to(dtype)

    @property
    def kept(self) -> torch.Tensor:
        """Pixels never freed in this schedule: they must come out bit-exact."""
        never = ~torch.isfinite(self.start)
        return never if self.strength >= 1.0 else never & (self.strength_map <= 0)   # strength < 1 mixes the map in
