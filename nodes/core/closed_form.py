"""ComfyUI's schedulers in closed form: the first noise level of an ``M``-step schedule, for many ``M`` at once.

``denoise`` mode asks, for every distinct total step count ``M = int(N / g)`` a change map needs, where
``KSampler`` with ``denoise = g`` starts: element ``-(N + 1)`` of ComfyUI's ``M``-step schedule. Building
every schedule costs ``O(M)`` each; these formulas give that one element, vectorised over all ``M``, for the
nine schedulers ComfyUI ships (``KNOWN_SCHEDULERS``). Each mirrors ComfyUI's own function operation for
operation (float64 maths rounded to float32 where ComfyUI rounds), and is tested level by level against it.

Pure torch: nothing here imports ComfyUI (the model's sampling comes in as numbers, tables and functions).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

#: ComfyUI schedulers whose start level :func:`denoise_start_levels` computes in closed form
KNOWN_SCHEDULERS = ("normal", "sgm_uniform", "karras", "exponential", "simple", "ddim_uniform", "linear_quadratic",
                    "kl_optimal", "beta")
#: a grid point of the ``beta`` schedule this close (in grid steps) to a rounding boundary is decided by the quantile
BETA_GRID_TOL = 1e-6


def _linspace_at(start: float, end: float, count: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Element ``pos`` of ``torch.linspace(start, end, count)`` (float64 maths, rounded to float32)."""
    span = (count - 1).clamp(min=1).to(torch.float64)
    frac = torch.where(count > 1, pos.to(torch.float64) / span, torch.zeros_like(span))
    return (start + (end - start) * frac).to(torch.float32)


def denoise_start_levels(scheduler: str, totals: torch.Tensor, n_steps: int, discard_penultimate: bool = False, *,
                         table: torch.Tensor | None = None, sigma_min: float = 0.0, sigma_max: float = 1.0,
                         t_max: float = 0.0, t_min: float = 0.0, zero_end: bool = False,
                         sigma_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         beta_cdf: Callable[[torch.Tensor], torch.Tensor] | None = None,
                         beta_ppf: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor | None:
    """KSampler's first noise level for ``n_steps`` steps at ``int(n_steps / denoise) == M``, for every ``M`` in ``totals``.

    That is element ``-(n_steps + 1)`` of ComfyUI's ``M``-step schedule (``M + 1`` steps with the
    penultimate level dropped for ``discard_penultimate`` samplers) — computed for that one element
    only, vectorised over all ``M``, instead of building every schedule. The model's sampling is
    passed in as tensors and numbers: ``table`` (its ``sigmas`` table), ``sigma_min``/``sigma_max``,
    ``t_max``/``t_min`` (``timestep(sigma_max)``/``timestep(sigma_min)``), ``zero_end`` (``sigma(t_min)``
    is 0, the ``normal`` scheduler then drops its appended 0) and ``sigma_fn`` (its vectorised
    ``sigma(timestep)``), ``beta_cdf``/``beta_ppf`` (the ``beta`` scheduler's distribution, float64 in
    and out; see :func:`beta_start_levels`). Float64 maths rounded to float32 as ComfyUI's schedules
    are: equal to ComfyUI's levels up to float32 rounding (the caller recomputes levels that land
    within :data:`LEVEL_CHECK_RTOL` of a decision, and levels returned as NaN). Returns float64
    levels, or ``None`` for a scheduler it does not know (or a schedule too short, where ComfyUI's own
    code decides what happens).
    """
    m = totals.to(torch.int64).flatten().cpu()
    if m.numel() == 0 or bool((m < n_steps).any()) or n_steps < 1:
        return None
    d = 1 if discard_penultimate else 0
    steps = m + d                      # the steps ComfyUI's scheduler function is called with
    pos = m - n_steps                  # index -(n + 1 + d) of an (steps + 1)-long list
    if scheduler in ("normal", "sgm_uniform"):
        if sigma_fn is None:
            return None
        count = steps + 1 if (scheduler == "sgm_uniform" or zero_end) else steps
        ts = _linspace_at(float(t_max), float(t_min), count, pos)
        out = sigma_fn(ts).to(torch.float32)
    elif scheduler == "karras":
        lo, hi = float(sigma_min) ** (1 / 7.0), float(sigma_max) ** (1 / 7.0)
        out = (hi + _linspace_at(0.0, 1.0, steps, pos) * (lo - hi)) ** 7.0     # float32, as ComfyUI computes it
    elif scheduler == "exponential":
        out = _linspace_at(math.log(float(sigma_max)), math.log(float(sigma_min)), steps, pos).to(torch.float64).exp()
    elif scheduler == "kl_optimal":
        if bool((steps < 2).any()):
            return None
        adj = pos.to(torch.float32) / (steps - 1).to(torch.float32)      # float32, as ComfyUI computes it
        out = torch.tan(adj * math.atan(float(sigma_min)) + (1 - adj) * math.atan(float(sigma_max)))
    elif scheduler == "linear_quadratic":
        t = steps.to(torch.float64)
        lin = torch.div(steps, 2, rounding_mode="floor").to(torch.float64)
        i = pos.to(torch.float64)
        thr = 0.025
        diff = lin - thr * t
        quad_steps = t - lin
        q_coef = diff / (lin * quad_steps ** 2)
        l_coef = torch.full_like(lin, thr) / lin - 2 * diff / (quad_steps ** 2)   # a true division (not a reciprocal)
        const = q_coef * (lin ** 2)
        x = torch.where(i < lin, i * thr / lin, q_coef * (i ** 2) + l_coef * i + const)
        x = torch.where(steps == 1, torch.zeros_like(x), x)
        out = (1.0 - x).to(torch.float32) * torch.tensor(float(sigma_max), dtype=torch.float32)
    elif scheduler == "beta":
        if table is None or beta_cdf is None or beta_ppf is None:
            return None
        out = beta_start_levels(table, steps, n_steps + d, beta_cdf, beta_ppf)
    elif scheduler in ("simple", "ddim_uniform"):
        if table is None:
            return None
        tab = table.detach().flatten().to("cpu", torch.float32)
        size = int(tab.numel())
        if scheduler == "simple":
            stride = torch.full(steps.shape, float(size), dtype=torch.float64) / steps.to(torch.float64)
            idx = torch.floor(pos.to(torch.float64) * stride).to(torch.int64)
            out = tab[size - 1 - idx]
        else:
            zero_start = math.isclose(float(tab[1]), 0, abs_tol=0.00001)
            calls = steps + 1 if zero_start else steps
            stride = torch.clamp(torch.div(size, calls, rounding_mode="floor"), min=1)
            count = torch.div(size - 2, stride, rounding_mode="floor") + 1     # x = 1, 1 + ss, ... < size
            length = count + (0 if zero_start else 1)
            p = length - (n_steps + 1 + d)
            if bool((p < 0).any()):
                return None
            inside = p < count
            src = (1 + stride * (count - 1 - p)).clamp(0, size - 1)
            out = torch.where(inside, tab[src], torch.zeros_like(tab[src]))
    else:
        return None
    return out.to(torch.float64)


def beta_start_levels(table: torch.Tensor, steps: torch.Tensor, j: int, cdf: Callable[[torch.Tensor], torch.Tensor],
                      ppf: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Level ``j`` from the end (1 = the last before the final 0) of ComfyUI's ``beta`` schedule of each ``steps``.

    ComfyUI's ``beta_scheduler`` takes ``x_i = 1 - i / S`` (``i < S``), ``t_i = rint(ppf(x_i) T)`` on the
    model's ``T + 1``-entry table, drops repeated ``t`` and appends 0. The ``t_i`` fall as ``i`` grows,
    so the level wanted is ``table[D_j]``, ``D_j`` the ``j``-th smallest distinct ``t_i``. Instead of
    ``S`` quantiles per schedule this counts, for every boundary ``(t + 1/2) / T`` between two timesteps,
    the grid points below it: ``x_i < c_t = cdf((t + 1/2) / T)`` iff ``i > S (1 - c_t)``; a ``t`` occurs iff
    that count grows at ``t``. A grid point within :data:`BETA_GRID_TOL` grid steps of a boundary
    (where the rounding could go either way, e.g. ``x = 1/2`` of a symmetric distribution) gets its
    ``t_i`` from ``ppf`` itself, as ComfyUI computes it. ``cdf``/``ppf``: the scheduler's Beta
    distribution, float64 tensors in and out. A schedule with fewer than ``j`` distinct ``t`` (more steps
    than the model's table has timesteps) gets its first level, the largest ``t``'s: KSampler's slice of
    the last ``n + 1`` levels takes the whole schedule; one with a single distinct ``t`` gets NaN (the
    caller asks ComfyUI's code). float32 table levels, as float64.
    """
    tab = table.detach().flatten().to("cpu", torch.float32)
    t_count = int(tab.numel()) - 1
    s = steps.to(torch.int64).flatten().cpu()
    if t_count < 1 or s.numel() == 0:
        return torch.full(s.shape, math.nan, dtype=torch.float64)
    bounds = (torch.arange(t_count, dtype=torch.float64) + 0.5) / t_count
    c = cdf(bounds).to("cpu", torch.float64).reshape(1, -1)                        # (1, T)
    if not bool(torch.isfinite(c).all()):
        return torch.full(s.shape, math.nan, dtype=torch.float64)
    s_col = s.reshape(-1, 1)
    pos = s_col.to(torch.float64) * (1.0 - c)                                        # (u, T)
    below = s_col - 1 - torch.floor(pos).to(torch.int64)                             # grid points with t_i <= t
    near = (pos - torch.round(pos)).abs() < BETA_GRID_TOL
    if bool(near.any()):   # decide those grid points as ComfyUI does: t_i = rint(ppf(1 - i * (1 / S)) T)
        rows, cols = near.nonzero(as_tuple=True)
        i0 = torch.round(pos[rows, cols])
        x = 1.0 - i0 * (1.0 / s[rows].to(torch.float64))
        t_exact = torch.round(ppf(x).to("cpu", torch.float64) * t_count)             # half to even, as numpy.rint
        below[rows, cols] = s[rows] - 1 - i0.to(torch.int64) + (t_exact <= cols).to(torch.int64)
    below = torch.minimum(below.clamp(min=0), s_col)
    below = torch.cat([below, s_col], dim=1)                                          # t = T: every grid point
    grows = torch.diff(below, dim=1, prepend=torch.zeros_like(below[:, :1])) > 0
    distinct = torch.cumsum(grows.to(torch.int64), dim=1)                             # distinct t_i <= t
    d_j = (distinct < j).sum(dim=1)                                                   # the first t with j of them
    level = tab[d_j.clamp(max=t_count)].to(torch.float64)
    # fewer than j distinct t (more steps than the table has timesteps): KSampler's slice takes the whole schedule,
    # whose first level is the largest t's
    top = t_count - torch.flip(grows, dims=[1]).to(torch.int64).argmax(dim=1)
    short = distinct[:, -1] < j
    level = torch.where(short, tab[top].to(torch.float64), level)
    return torch.where(short & (distinct[:, -1] < 2), torch.full_like(level, math.nan), level)
