"""DiffEdit statistics and the deterministic inversion arithmetic (Couairon et al. 2022).

Mask estimation: the input latent is noised ``n`` times to one noise level; the model's denoised
(x0) predictions under the query and the reference conditioning are compared, and
``mean over draws and channels of |x0_query - x0_reference|`` is the heat map. For every
model family ComfyUI writes the noisy latent as ``x = a(s) x0 + b(s) eps``, and at a fixed
``s`` and ``x`` the family's own output ``u`` gives ``x0 = c1(s) x - c2(s) u`` (eps, v and
flow alike), so ``|dx0| = c2(s) |du|``: the x0 difference equals the eps/v/velocity difference
of the paper up to a constant per noise level, which the rescaling below removes.

Normalisation and thresholds (per image):
  ``rescale``    the paper's: extreme values removed, then rescaled. ``lo, q`` = the values of
                 rank ``k + 1`` and ``N - k`` (ascending, 1-based) of the ``N`` pixels, with
                 ``k = floor((1 - OUTLIER_QUANTILE) N)`` (the top and bottom 8 %);
                 ``hi = max(q, lo + CLIP_FLOOR (max - lo))``; heat = (clip(d, lo, hi) - lo) / (hi - lo);
                 mask = heat >= threshold (0.5). A few outlier cells no longer compress the rest of
                 the heat below the cut; the floor (half the range) keeps an edit region smaller than
                 8 % of the picture whole (there the 92nd percentile is background), so the cut
                 stays between 25 % and 50 % of the raw range at threshold 0.5.
  ``minmax``     heat = (d - min) / (max - min); mask = heat >= threshold (what ``rescale``
                 was before: a plain min-max, masks too small on learned models)
  ``clamp``      diffusers' ``generate_mask`` rule: ``cap = ratio * mean(d)``;
                 heat = clamp(d, 0, cap) / cap; mask = heat > threshold (strictly above, as diffusers'
                 ``> 0.5``). Per image (diffusers takes the mean over its whole batch).
  ``otsu``       heat as minmax; mask = heat >= Otsu's threshold of the heat histogram
  ``percentile`` heat as minmax; mask = heat >= the ``percentile`` quantile of the heat

Inversion: with ``a(s), b(s)`` from the model's own noise scaling, the implied noise of a
denoised prediction ``d`` at ``x`` is ``(x - a d) / b`` and a deterministic step to level ``s'`` is
``a(s') d + b(s') eps`` (DDIM; ComfyUI's ``euler`` takes exactly this step on eps and flow
models).

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math

import torch

from .errors import InputError
from .maps import blur_maps, grow, resample

METHODS = ("rescale", "minmax", "clamp", "otsu", "percentile")
#: ``rescale``: the fraction of pixels below the upper clip (and above the lower one); tuned on the
#: learned digits model's tuning split (benchmarks/bench_quality.py)
OUTLIER_QUANTILE = 0.92
#: ``rescale``: the upper clip never goes below this fraction of the (lower-clipped) range
CLIP_FLOOR = 0.5
#: below this a(s) (flow models near s = 1) the x0 of the current level is not recovered by division
MIN_SIGNAL = 1e-2


# -- noise draws and batching ---------------------------------------------------------------------

def draw_noise(seed: int, draws: range, shape) -> torch.Tensor:
    """Standard normal draws ``draws`` (e.g. ``range(10, 20)``) of ``shape``, stacked.

    Draw ``j`` comes from its own CPU generator seeded by ``(seed, j)``, so a draw is the same
    whichever chunk it is made in (batch size never changes the mask) and only one chunk is
    ever in memory.
    """
    gen = torch.Generator(device="cpu")
    out = torch.empty((len(draws), *shape), dtype=torch.float32)
    for i, j in enumerate(draws):
        gen.manual_seed((int(seed) * 1_000_003 + int(j)) & 0x7FFFFFFFFFFFFFFF)
        out[i] = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
    return out


def draws_per_call(batch_size: int, evaluations_per_draw: int, n: int) -> tuple[int, bool]:
    """How many draws go through the model together, and whether each conditioning gets its own call.

    ``batch_size`` counts model evaluations per call (a draw needs one per conditioning); it is
    rounded down to a multiple of ``evaluations_per_draw``. Below that, conditionings are
    evaluated in separate calls of ``batch_size`` draws.
    """
    per = batch_size // evaluations_per_draw
    if per >= 1:
        return min(per, n), False
    return max(1, min(batch_size, n)), True


def auto_batch(n: int, evaluations_per_draw: int, device_type: str, fits) -> int:
    """``batch_size = 0``: model evaluations per call chosen for this device.

    On CPU one evaluation per call: batching there only costs time (measured in
    ``benchmarks/bench_diffedit.py``: batch 2 was 1.13x and batch 20 1.30x slower than single
    evaluations on the tiny UNet). Elsewhere as many draws as ``fits(evaluations)`` (ComfyUI's
    memory estimate) allows, halving from all ``n``.
    """
    if device_type == "cpu":
        return 1
    draws = n
    while draws > 1 and not fits(draws * evaluations_per_draw):
        draws = (draws + 1) // 2
    return draws * evaluations_per_draw


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


# -- heat maps and masks ----------------------------------------------------------------------------

def normalize(d: torch.Tensor, method: str, ratio: float = 3.0) -> torch.Tensor:
    """Per-image 0..1 heat from raw differences ``(B,H,W)`` (constant maps give 0)."""
    d = d.to(torch.float32)
    if method == "clamp":   # diffusers: mask_guidance_map.clamp(0, cap) / cap with cap = ratio * mean
        cap = ratio * d.mean(dim=(1, 2), keepdim=True)
        return torch.where(cap > 0, torch.minimum(d.clamp(min=0.0), cap) / cap.clamp(min=1e-30), torch.zeros_like(d))
    if method == "rescale":
        lo, hi = clip_range(d, OUTLIER_QUANTILE)
        hi = torch.maximum(hi, lo + CLIP_FLOOR * (d.amax(dim=(1, 2), keepdim=True) - lo))
        d = torch.minimum(torch.maximum(d, lo), hi)
    lo = d.amin(dim=(1, 2), keepdim=True)
    span = d.amax(dim=(1, 2), keepdim=True) - lo
    return torch.where(span > 0, (d - lo) / span.clamp(min=1e-30), torch.zeros_like(d))


def clip_range(d: torch.Tensor, quantile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image ``(B,1,1)`` bounds leaving out the ``k = floor((1 - quantile) N)`` highest and lowest of ``N`` pixels."""
    flat = d.flatten(1)
    n = flat.shape[1]
    k = min(int(math.floor(round((1.0 - float(quantile)) * n, 6))), (n - 1) // 2)
    hi = torch.kthvalue(flat, n - k, dim=1).values if k > 0 else flat.amax(dim=1)
    lo = torch.kthvalue(flat, k + 1, dim=1).values if k > 0 else flat.amin(dim=1)
    return lo.view(-1, 1, 1), hi.view(-1, 1, 1)


def cut(heat: torch.Tensor, method: str, threshold: float = 0.5, percentile: float = 0.8) -> torch.Tensor:
    """The binary mask of ``heat`` for ``method``: ``heat >= cut``, or ``heat > threshold`` for ``clamp`` (diffusers')."""
    at = thresholds(heat, method, threshold, percentile).to(heat.device)
    return ((heat > at) if method == "clamp" else (heat >= at)).to(torch.float32)


def mask_stats(heat: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per image: ``area`` (fraction of the picture in the mask) and the heat's spread (``p50``, ``p90``)."""
    q = torch.quantile(heat.flatten(1)[:, :: max(1, heat[0].numel() // 65536)].to(torch.float32),
                       torch.tensor([0.5, 0.9]), dim=1)
    return {"area": mask.flatten(1).mean(1), "p50": q[0], "p90": q[1]}


def stats_text(stats: dict) -> str:
    """One line for the node: mask area and heat spread (the batch's first images)."""
    parts = [f"mask {100 * float(a):.1f}% (heat p50 {float(m):.2f}, p90 {float(h):.2f})"
             for a, m, h in list(zip(stats["area"], stats["p50"], stats["p90"]))[:4]]
    more = f" +{len(stats['area']) - 4} more" if len(stats["area"]) > 4 else ""
    return "; ".join(parts) + more


def otsu_threshold(heat: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of values in 0..1: the cut maximising the between-class variance."""
    hist = torch.histc(heat.flatten().to(torch.float64), bins=bins, min=0.0, max=1.0)
    p = hist / hist.sum().clamp(min=1)
    centres = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
    w0 = torch.cumsum(p, 0)
    m0 = torch.cumsum(p * centres, 0)
    total = m0[-1]
    between = (total * w0 - m0) ** 2 / (w0 * (1 - w0)).clamp(min=1e-12)
    between[(w0 <= 0) | (w0 >= 1)] = -1
    k = int(torch.argmax(between))
    return float((k + 1) / bins)


def thresholds(heat: torch.Tensor, method: str, threshold: float = 0.5, percentile: float = 0.8) -> torch.Tensor:
    """The cut of each image ``(B,1,1)`` for ``method``."""
    if method in ("rescale", "minmax", "clamp"):
        return torch.full((heat.shape[0], 1, 1), float(threshold))
    if method == "otsu":
        return torch.tensor([otsu_threshold(h) for h in heat]).view(-1, 1, 1)
    if method == "percentile":
        q = torch.quantile(heat.flatten(1).to(torch.float64), float(percentile), dim=1)
        return q.to(torch.float32).view(-1, 1, 1)
    raise InputError("threshold_method", f"one of {METHODS}", repr(method))


def heat_and_mask(diff: torch.Tensor, size: tuple[int, int], method: str = "rescale", threshold: float = 0.5,
                  ratio: float = 3.0, percentile: float = 0.8, smooth: float = 0.0, grow_pixels: int = 0,
                  temporal: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw latent-grid differences → soft heat and binary mask at ``size``.

    ``diff``: ``(B,h,w)`` for pictures, ``(B,T,h,w)`` for videos (every frame from the same noise draws); the
    heat and mask are ``(B*T,H,W)``, sample-major as ComfyUI lays out the frames of a video batch (``T = 1``:
    ``(B,H,W)``). A picture is a video of one frame: ``temporal`` > 0 first smooths the differences along the
    frames (:func:`smooth_frames`). Each frame is resampled to ``size`` (bilinear when enlarging, area when
    shrinking; never clamped, so the mask does not depend on latent units or output size) and optionally
    Gaussian-smoothed (``smooth`` px radius); normalisation by ``method`` and the threshold act on all frames of
    a sample together (a frame the prompts agree on stays dark); the mask is then grown or shrunk by
    ``grow_pixels``.
    """
    frames = smooth_frames(diff.to(torch.float32), temporal) if diff.ndim == 4 else diff.to(torch.float32).unsqueeze(1)
    b, t = frames.shape[:2]
    d = resample(frames.reshape(b * t, *frames.shape[2:]), size)
    if smooth > 0:
        d = blur_maps(d, int(round(smooth)))
    h, w = d.shape[-2:]
    heat = normalize(d.reshape(b, t * h, w), method, ratio)
    mask = cut(heat, method, threshold, percentile).reshape(b * t, h, w)
    return heat.reshape(b * t, h, w).contiguous(), grow(mask, grow_pixels).contiguous()


def smooth_frames(diff: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian smoothing of ``(B,T,h,w)`` differences along the frames: kernel ``2 radius + 1``, sigma
    ``radius / 2``, normalised, replicate border (the first and last frames continue past the ends)."""
    b, t = diff.shape[:2]
    if radius <= 0 or t == 1:
        return diff
    r = int(radius)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    w = torch.exp(-0.5 * (x / (r / 2.0)) ** 2)
    w = (w / w.sum()).view(1, 1, -1)
    seq = diff.to(torch.float32).permute(0, 2, 3, 1).reshape(-1, 1, t)
    seq = torch.nn.functional.pad(seq, (r, r), mode="replicate")
    out = torch.nn.functional.conv1d(seq, w)
    return out.reshape(b, *diff.shape[2:], t).permute(0, 3, 1, 2).contiguous()


# -- deterministic inversion arithmetic ---------------------------------------------------------------

def implied_noise(x: torch.Tensor, denoised: torch.Tensor, a, b) -> torch.Tensor:
    """The noise that puts ``denoised`` at ``x``: ``(x - a d) / b``."""
    return (x - a * denoised) / b


def recombine(denoised: torch.Tensor, noise: torch.Tensor, a, b) -> torch.Tensor:
    """``a d + b eps``: the latent at the level whose scalings are ``a``, ``b``."""
    return a * denoised + b * noise


def invert_step(x: torch.Tensor, denoised_next: torch.Tensor, now: tuple, nxt: tuple) -> torch.Tensor:
    """One DDIM inversion step from the level ``now = (a, b)`` to the noisier ``nxt = (a', b')``.

    ``denoised_next`` is the model's prediction for ``x`` evaluated at the next level (the usual
    DDIM-inversion approximation). Its implied noise is kept; the x0 at the current level is
    recovered from ``x`` — except where ``a`` is below :data:`MIN_SIGNAL` (flow models near
    ``s = 1``), where the prediction itself is used instead of dividing by ``a``.
    """
    a, b = now
    a2, b2 = nxt
    eps = implied_noise(x, denoised_next, a2, b2)
    if float(a) < MIN_SIGNAL:
        x0 = denoised_next
    else:
        x0 = (x - b * eps) / a
    return recombine(x0, eps, a2, b2)
