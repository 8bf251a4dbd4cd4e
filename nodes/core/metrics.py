"""How closely an edited picture follows its change map (adherence metrics), from pixels only.

The Differential Diffusion paper's CAM and DAM have no public code; these are this pack's
definitions. Everything is computed per image on the map's grid (``h x w``, the map's own
resolution), then averaged over the batch for the summary.

Realized change
    ``R = mean over R,G,B of |result - original|`` at the pictures' resolution (0..1), resized
    to the map's grid (area average when shrinking, bilinear when enlarging), then optionally
    Gaussian-smoothed by ``smooth`` grid pixels (:func:`maps.blur_maps`).

Calibration (realized change -> map units)
    With a sweep — pairs ``(s_i, c_i)``: the mean realized change ``c_i`` of edits made with a
    uniform map of strength ``s_i`` — ``R^ = interp(R; c -> s)``, piecewise linear through the
    points sorted by strength (``c`` made non-decreasing by a running maximum; a repeated ``c``
    keeps its lowest strength), clamped to the first/last strength outside the measured range.
    Without a sweep the fallback is the least-squares scale through 0:
    ``R^ = clamp(a R, 0, 1)``, ``a = sum(R m) / sum(R^2)`` (monotone, fitted on this image; the
    report says so).

correlation (Pearson) and spearman (CAM-like)
    Pearson ``r`` between the map ``m`` and ``R`` over the pixels; Spearman = Pearson of their
    ranks (ties get their average rank). Higher is better; undefined (NaN) for a uniform map or
    a result with uniform change.

distance (DAM-like)
    ``mean |R^ - m|`` over the pixels, in map units 0..1. Lower is better.

leakage, leakage_max
    Mean and maximum of ``R`` (raw, 0..1 RGB units) over the pixels where the map is 0
    (``m <= 0.5/255``, zero once stored as 8 bits). Lower is better; NaN if no such pixel.

seam
    ``g(x) = |Sobel(x)|`` (kornia ``spatial_gradient``, normalised so a ramp of slope ``s`` per
    pixel reads ``s``). Contour band ``C = {g(m) > 0.001}`` (where the map varies), the rest
    ``E``. Excess change gradient ``e = max(g(R^) - g(m), 0)``: how much faster the calibrated
    change varies than the map asks. ``seam = mean_C(e) - mean_E(e)`` (``mean_C(e)`` when E is
    empty; NaN when the map has no contour). 0 = no more abrupt change on the contours than
    elsewhere; lower is better.

mean_change
    ``mean(R)``. With a uniform map of strength ``s`` it is the calibration point ``(s, mean_change)``.

The same report from the command line: ``python benchmarks/adherence.py ORIGINAL.png RESULT.png MAP.png``.

Pure torch + kornia: nothing here imports ComfyUI.
"""

from __future__ import annotations

import json
import math
import re

import kornia
import torch

from .errors import InputError, describe
from .maps import blur_maps, match_batch, read_change_map, resize_maps
from .pixels import as_images
from .validate import check_integer

ZERO = 0.5 / 255.0
CONTOUR = 1e-3
METRICS = ("correlation", "spearman", "distance", "leakage", "leakage_max", "seam", "mean_change")
LOWER_IS_BETTER = {"distance", "leakage", "leakage_max", "seam"}


# -- realized change -------------------------------------------------------------------------------

def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image[..., :3] if image.shape[-1] >= 3 else image[..., :1]


def realized_change(original, result, size: tuple[int, int], smooth: int = 0) -> torch.Tensor:
    """``R``: mean absolute RGB difference per pixel, on a grid of ``size = (h, w)``; ``(B,h,w)`` in 0..1."""
    orig = _rgb(as_images(original, "original"))
    res = _rgb(as_images(result, "result"))
    if orig.shape[1:] != res.shape[1:]:
        raise InputError("result", f"an IMAGE of the original's size and colour channels "
                             f"{tuple(orig.shape[1:])}", f"{tuple(res.shape[1:])}")
    check_integer(smooth, "smooth", 0, what="pixels")
    batch = max(orig.shape[0], res.shape[0])
    orig = match_batch(orig, batch, "original", "result's batch")
    res = match_batch(res, batch, "result", "original's batch")
    diff = (res - orig).abs().mean(dim=-1).clamp(0.0, 1.0)
    return blur_maps(resize_maps(diff, size), smooth).clamp(0.0, 1.0)


# -- statistics ------------------------------------------------------------------------------------

def pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of ``(B,N)`` rows (float64); NaN where either row is constant."""
    x = x.to(torch.float64) - x.to(torch.float64).mean(dim=1, keepdim=True)
    y = y.to(torch.float64) - y.to(torch.float64).mean(dim=1, keepdim=True)
    den = torch.sqrt((x * x).sum(1) * (y * y).sum(1))
    r = (x * y).sum(1) / den
    return torch.where(den > 1e-12, r.clamp(-1.0, 1.0), torch.full_like(r, float("nan")))


def ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of each row of ``(B,N)``; tied values share their average rank."""
    out = torch.empty(x.shape, dtype=torch.float64)
    for i, row in enumerate(x):
        values, inverse, counts = torch.unique(row, sorted=True, return_inverse=True, return_counts=True)
        last = torch.cumsum(counts, 0).to(torch.float64)
        out[i] = (last - (counts.to(torch.float64) - 1.0) / 2.0)[inverse]
    return out


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return pearson(ranks(x), ranks(y))


def gradient_magnitude(maps: torch.Tensor) -> torch.Tensor:
    """``|Sobel|`` of ``(B,H,W)`` (kornia, normalised: a ramp of slope s per pixel reads s)."""
    g = kornia.filters.spatial_gradient(maps.unsqueeze(1), mode="sobel", normalized=True)[:, 0]
    return torch.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2)


def _masked_mean(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    n = where.sum(dim=(1, 2)).to(torch.float64)
    s = (x.to(torch.float64) * where).sum(dim=(1, 2))
    return torch.where(n > 0, s / n.clamp_min(1.0), torch.full_like(s, float("nan")))


# -- calibration -----------------------------------------------------------------------------------

def parse_calibration(text, input_name: str = "calibration") -> list[tuple[float, float]] | None:
    """Pairs ``(strength, mean realized change)`` from text; None for empty text.

    Accepted: JSON ``[[0, 0.0], [0.5, 0.04], [1, 0.12]]``, or pairs separated by newlines,
    ``;`` or ``,`` with ``:`` between the two numbers (``0:0, 0.5:0.04, 1:0.12``), or one pair a
    line with a comma or spaces between (``0.5, 0.04``). Strengths in 0..1, changes >= 0, at
    least two pairs with different changes.
    """
    if text is None or (isinstance(text, str) and not text.strip()) or (isinstance(text, (list, tuple)) and not text):
        return None
    if isinstance(text, (list, tuple)):
        raw = list(text)
    elif not isinstance(text, str):
        raise InputError(input_name, "text with (strength, change) pairs", describe(text))
    elif text.strip().startswith("["):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InputError(input_name, "valid JSON pairs like [[0, 0.0], [1, 0.12]]", str(exc)) from None
        except RecursionError:   # brackets nested deeper than Python's parser goes: no pairs in there
            raise InputError(input_name, "JSON pairs like [[0, 0.0], [1, 0.12]]",
                             f"brackets nested too deeply ({len(text)} characters)") from None
    elif ":" in text:
        raw = [part.split(":") for part in re.split(r"[;,\n]+", text) if part.strip()]
    else:
        raw = [re.split(r"[,\s]+", line.strip()) for line in re.split(r"[;\n]+", text) if line.strip()]
    pairs = []
    for item in raw:
        try:
            s, c = (float(v) for v in item)
        except (TypeError, ValueError):
            raise InputError(input_name, "pairs of two numbers 'strength:change'", repr(item)) from None
        if not (math.isfinite(s) and math.isfinite(c)) or not 0.0 <= s <= 1.0 or c < 0.0:
            raise InputError(input_name, "strengths in 0..1 and changes >= 0", repr(item))
        pairs.append((s, c))
    pairs.sort()
    if len({c for _, c in pairs}) < 2:
        raise InputError(input_name, "at least two pairs with different mean changes", repr(pairs))
    return pairs


def calibrate(realized: torch.Tensor, maps: torch.Tensor, pairs) -> tuple[torch.Tensor, str]:
    """``R^`` in map units and a sentence saying how it was obtained (see the module docstring)."""
    if pairs:
        strengths, changes, last = [], [], -1.0
        for s, c in pairs:
            c = max(c, last)
            if c > last:
                strengths.append(s)
                changes.append(c)
            last = c
        cs = torch.tensor(changes, dtype=torch.float64)
        ss = torch.tensor(strengths, dtype=torch.float64)
        r = realized.to(torch.float64).clamp(float(cs[0]), float(cs[-1]))
        hi = torch.searchsorted(cs, r.contiguous(), right=False).clamp(1, len(cs) - 1)
        lo = hi - 1
        frac = (r - cs[lo]) / (cs[hi] - cs[lo])
        out = ss[lo] + frac * (ss[hi] - ss[lo])
        how = f"calibrated by a {len(pairs)}-point uniform-map sweep"
        return out.clamp(0.0, 1.0).to(torch.float32), how
    r = realized.to(torch.float64)
    num = (r * maps.to(torch.float64)).sum(dim=(1, 2), keepdim=True)
    den = (r * r).sum(dim=(1, 2), keepdim=True)
    scale = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(den))
    how = ("NO CALIBRATION given: fallback monotone normalisation R^ = a R, a = sum(R m)/sum(R^2) = "
           + ", ".join(f"{v:.4g}" for v in scale.flatten().tolist()))
    return (scale * r).clamp(0.0, 1.0).to(torch.float32), how


# -- all metrics -----------------------------------------------------------------------------------

def adherence(original, result, change_map, calibration=None, smooth: int = 0, invert: bool = False) -> dict:
    """Every metric per image (``(B,)`` float64 tensors named as in :data:`METRICS`), plus ``calibrated``
    (``R^``, ``(B,h,w)``), ``realized`` (``R``), ``uniform`` (per image: the map's value if uniform, else None)
    and ``how`` (the calibration sentence)."""
    maps = read_change_map(change_map, invert)
    pairs = parse_calibration(calibration)
    realized = realized_change(original, result, tuple(maps.shape[-2:]), smooth)
    batch = max(realized.shape[0], maps.shape[0])
    realized = match_batch(realized, batch, "result", "change map's batch")
    maps = match_batch(maps, batch, "change_map", "image batch")
    calibrated, how = calibrate(realized, maps, pairs)
    flat_m, flat_r = maps.flatten(1), realized.flatten(1)
    keep = maps <= ZERO
    leak_max = torch.where(keep, realized, torch.full_like(realized, -1.0)).amax(dim=(1, 2)).to(torch.float64)
    g_map = gradient_magnitude(maps)
    excess = (gradient_magnitude(calibrated) - g_map).clamp_min(0.0)
    band = g_map > CONTOUR
    on, off = _masked_mean(excess, band), _masked_mean(excess, ~band)
    return {
        "correlation": pearson(flat_m, flat_r),
        "spearman": spearman(flat_m, flat_r),
        "distance": (calibrated - maps).abs().mean(dim=(1, 2)).to(torch.float64),
        "leakage": _masked_mean(realized, keep),
        "leakage_max": torch.where(leak_max >= 0, leak_max, torch.full_like(leak_max, float("nan"))),
        "seam": torch.where(torch.isnan(off), on, on - off),
        "mean_change": realized.mean(dim=(1, 2)).to(torch.float64),
        "calibrated": calibrated,
        "realized": realized,
        "uniform": [float(v) if bool((maps[i] == v).all()) else None for i, v in enumerate(flat_m[:, 0].tolist())],
        "how": how,
    }


def summary(values: torch.Tensor) -> float:
    """Batch mean ignoring NaN; NaN when every image's value is NaN."""
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


def as_json(result: dict) -> dict:
    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    out = {k: {"mean": clean(summary(result[k])), "per_image": [clean(v) for v in result[k].tolist()]} for k in METRICS}
    out["calibration"] = result["how"]
    out["grid"] = list(result["calibrated"].shape[-2:])
    return out


def report(result: dict) -> str:
    """A small fixed-width table: one row a metric, one column per image, then the mean."""
    n = len(result["mean_change"])
    head = f"{'metric':<13}" + "".join(f"{'image ' + str(i):>11}" for i in range(n)) + f"{'mean':>11}  better"
    lines = [head]
    for k in METRICS:
        vals = result[k].tolist() + [summary(result[k])]
        better = "lower" if k in LOWER_IS_BETTER else ("higher" if k in ("correlation", "spearman") else "")
        lines.append(f"{k:<13}" + "".join(f"{v:>11.4f}" for v in vals) + f"  {better}")
    h, w = result["calibrated"].shape[-2:]
    lines.append(f"grid: {w}x{h} (the change map's resolution); {result['how']}")
    for i, s in enumerate(result["uniform"]):
        if s is not None:
            change = float(result["mean_change"][i])
            lines.append(f"image {i}: the map is uniform; calibration pair {s:.4g}:{change:.5g}")
    return "\n".join(lines)
