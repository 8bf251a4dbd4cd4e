"""Register an edited picture onto its source: undo the editor's small shift, zoom and turn.

Instruction editors (FLUX Kontext, Qwen-Image-Edit) redraw the whole picture, often a few pixels
off: shifted, zoomed by a few percent, at another resolution. A pixel difference then lights up
every edge of the picture. :func:`register` fits the geometry first:

1. ``after`` is resized to ``before``'s size (bilinear, antialiased), as the difference does.
2. Both are turned into *structure* images that an editor's colour shift and one local edit do not
   move: each colour channel band-passed (Gaussian blur of sigma ``LOWPASS_SIGMA`` minus one of
   ``HIGHPASS_SIGMA`` px: no offset, little noise), divided by its median absolute value (no gain) and
   clipped to ``+-CLIP`` (one edit's strong edges cannot outweigh the rest), on a copy whose longest side
   is at most ``COARSE_SIDE`` px.
3. Coarse fit: for each scale of ``SCALES`` (``similarity``; ``shift``: scale 1 only) the scaled
   ``after`` is phase-correlated with ``before`` (Hann window); the highest normalised peak gives the
   scale and the whole-pixel shift.
4. Fine fit: Gauss-Newton on the structure images at most ``FINE_SIDE`` px a side (``shift``: 2
   parameters, ``similarity``: shift, scale and rotation), ``ITERATIONS`` rounds, each on the pixels whose
   residual is at most ``3 x median`` (the local edit is left out), inside both frames.
5. A fit that moves no pixel of the picture by ``IDENTITY_PX`` px or more, or that does not lower the median
   structure residual to ``ACCEPT`` x that of no fit (a flat or periodic picture: no shift is certain), is the identity: ``after``
   comes back as it is, bit for bit. Otherwise ``after`` is resampled (bilinear) at ``q = s R (p - c) + c + t``
   and the pixels that fall outside its frame are reported (``valid``), so the caller keeps the source there.

The transform maps a pixel ``p`` of ``before`` (x right, y down, ``c`` the picture's centre) to the place
``q`` where the editor drew it: ``dx, dy`` in ``before``'s pixels, ``scale`` > 1 when the editor zoomed in
(content drawn larger), ``rotation`` in degrees (counter-clockwise on screen).

Pure torch + kornia: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from .construct import check_choice

ALIGN = ("similarity", "shift", "off")
SCALES = tuple(round(0.94 + 0.005 * i, 3) for i in range(25))   # 0.94 .. 1.06
COARSE_SIDE = 256
FINE_SIDE = 1024
HIGHPASS_SIGMA = 4.0
LOWPASS_SIGMA = 1.0
CLIP = 3.0
ITERATIONS = 12
IDENTITY_PX = 0.2
ACCEPT = 0.8      # a fit is kept only where it lowers the median structure residual to 80 % of no fit's or less
MAX_SHIFT_PX, MAX_SHIFT_SHARE = 8, 0.06   # the coarse search: shifts up to 6 % of the side (at least 8 px)


@dataclass(frozen=True)
class Transform:
    """The fitted geometry of one picture (see the module docstring)."""
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    rotation: float = 0.0       # degrees
    identity: bool = True
    confidence: float = 1.0     # share of the picture the fit explains (pixels within 3 x median residual)

    def text(self) -> str:
        if self.identity:
            return "aligned: no shift, scale 1"
        rot = f", rotation {self.rotation:+.2f} deg" if abs(self.rotation) >= 0.01 else ""
        return f"aligned: shift {self.dx:+.2f}, {self.dy:+.2f} px, scale {self.scale:.4f}{rot}"


def _grey(img: torch.Tensor) -> torch.Tensor:
    """``(B,3,H,W)`` -> ``(B,1,H,W)`` luminance (Rec. 601)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(1, 3, 1, 1)
    return (img * w).sum(1, keepdim=True)


def _blur(g: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(g, (k, k), (sigma, sigma), border_type="replicate")


def structure(img: torch.Tensor, side: int) -> torch.Tensor:
    """The colour-shift-free structure image of ``(B,3,H,W)`` at most ``side`` px a side (module docstring, 2)."""
    h, w = img.shape[-2:]
    f = side / max(h, w)
    g = img.float()
    if f < 1.0:
        g = F.interpolate(g, size=(max(8, round(h * f)), max(8, round(w * f))), mode="bilinear",
                          align_corners=False, antialias=True)
    sigma = HIGHPASS_SIGMA * min(1.0, f) if f < 1.0 else HIGHPASS_SIGMA
    g = _blur(g, max(LOWPASS_SIGMA, 0.5 * sigma / HIGHPASS_SIGMA)) - _blur(g, sigma)
    spread = g.abs().flatten(2).median(2).values.view(g.shape[0], g.shape[1], 1, 1).clamp_min(1e-3)
    return (g / spread).clamp(-CLIP, CLIP)   # no local edit's strong edges can outweigh the rest of the picture


def _grid(n: int, h: int, w: int, theta: torch.Tensor) -> torch.Tensor:
    """Sampling grid for ``q = A (p - c) + c + t`` in pixel units; ``theta`` ``(n,4)`` = (tx, ty, a, b) with
    ``A = [[1 + a, -b], [b, 1 + a]]`` -> normalised coordinates for grid_sample (align_corners False)."""
    dev, dt = theta.device, theta.dtype
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=dt), torch.arange(w, device=dev, dtype=dt), indexing="ij")
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    px, py = xs - cx, ys - cy
    tx, ty, a, b = (theta[:, i].view(n, 1, 1) for i in range(4))
    qx = (1 + a) * px - b * py + cx + tx
    qy = b * px + (1 + a) * py + cy + ty
    return torch.stack([(2 * qx + 1) / w - 1, (2 * qy + 1) / h - 1], -1)


def warp(img: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``img`` ``(B,C,H,W)`` sampled at ``q(p)``; and the bool ``(B,H,W)`` of pixels whose ``q`` lies inside the frame
    (bilinear needs the four neighbours: at most half a pixel beyond the outer pixel centres)."""
    n, _, h, w = img.shape
    grid = _grid(n, h, w, theta.to(img.dtype))
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    qx = (grid[..., 0] + 1) * w / 2 - 0.5
    qy = (grid[..., 1] + 1) * h / 2 - 0.5
    valid = (qx >= -1e-4) & (qx <= w - 1 + 1e-4) & (qy >= -1e-4) & (qy <= h - 1 + 1e-4)
    return out, valid


def _hann(h: int, w: int, device, dtype) -> torch.Tensor:
    return (torch.hann_window(h, periodic=False, device=device, dtype=dtype).view(h, 1)
            * torch.hann_window(w, periodic=False, device=device, dtype=dtype).view(1, w))


def phase_correlate(src: torch.Tensor, moved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Whole-pixel shifts ``(tx, ty)`` with ``moved(p + t) ~ src(p)``, for ``(B,1,H,W)`` band-passed pairs (Hann window,
    the cross-correlation's peak); and each peak's height (the correlation: 1 for a pure shift, near 0 for unrelated
    pictures)."""
    n, _, h, w = src.shape
    win = _hann(h, w, src.device, src.dtype)
    a, b = src * win, moved * win
    fa, fb = torch.fft.rfft2(a), torch.fft.rfft2(b)
    norm = (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1)).clamp_min(1e-12).view(n, 1, 1)
    r = torch.fft.irfft2(fb * fa.conj(), s=(h, w)).sum(1) / norm   # circular cross-correlation, summed over channels
    limit = max(MAX_SHIFT_PX, round(MAX_SHIFT_SHARE * max(h, w)))
    limit_y, limit_x = min(limit, h // 2), min(limit, w // 2)
    iy = torch.arange(h, device=src.device).view(h, 1)
    ix = torch.arange(w, device=src.device).view(1, w)
    sy = torch.where(iy > h // 2, iy - h, iy).expand(h, w)
    sx = torch.where(ix > w // 2, ix - w, ix).expand(h, w)
    near = (sy.abs() <= limit_y) & (sx.abs() <= limit_x)
    r = torch.where(near, r, torch.full_like(r, -1e9))
    peak, idx = r.flatten(1).max(1)
    ty, tx = sy.flatten()[idx], sx.flatten()[idx]
    return tx.to(src.dtype), ty.to(src.dtype), peak


def _coarse(src: torch.Tensor, moved: torch.Tensor, scales) -> torch.Tensor:
    """``(n,4)`` parameters from the best scale's phase correlation (module docstring, 3)."""
    n = src.shape[0]
    best = torch.full((n,), -1e9, dtype=src.dtype, device=src.device)
    theta = torch.zeros(n, 4, dtype=src.dtype, device=src.device)
    for s in scales:
        t0 = torch.zeros(n, 4, dtype=src.dtype, device=src.device)
        t0[:, 2] = s - 1.0
        scaled, _ = warp(moved, t0)
        tx, ty, peak = phase_correlate(src, scaled)
        # the scaled copy's shift t' maps back to the original through the scale: q = s (p + t' - c) + c
        better = peak > best
        cand = torch.stack([s * tx, s * ty, torch.full_like(tx, s - 1.0), torch.zeros_like(tx)], 1)
        theta = torch.where(better.view(n, 1), cand, theta)
        best = torch.where(better, peak, best)
    return theta


def _refine(src: torch.Tensor, moved: torch.Tensor, theta: torch.Tensor, similarity: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton on ``(n,4)`` parameters in ``src``'s pixel units (module docstring, 4); and the share of the
    pixels the last round kept."""
    n, _, h, w = src.shape
    dev, dt = src.device, torch.float64
    src, moved, theta = src.to(dt), moved.to(dt), theta.to(dt).clone()
    c = src.shape[1]
    pad = F.pad(moved, (1, 1, 1, 1), mode="replicate")
    ix0 = (pad[..., 1:-1, 2:] - pad[..., 1:-1, :-2]) / 2.0             # central differences, (n,c,h,w)
    iy0 = (pad[..., 2:, 1:-1] - pad[..., :-2, 1:-1]) / 2.0
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=dt), torch.arange(w, device=dev, dtype=dt), indexing="ij")
    px, py = (xs - (w - 1) / 2.0).expand(n, h, w), (ys - (h - 1) / 2.0).expand(n, h, w)
    k = 4 if similarity else 2
    kept = torch.ones(n, dtype=dt, device=dev)
    for _ in range(ITERATIONS):
        both = torch.cat([moved, ix0, iy0], 1)
        sampled, valid = warp(both, theta)
        r = sampled[:, :c] - src                                         # (n,c,h,w)
        ix, iy = sampled[:, c:2 * c], sampled[:, 2 * c:]
        qx, qy = px.unsqueeze(1), py.unsqueeze(1)
        cols = [ix, iy, ix * qx + iy * qy, -ix * qy + iy * qx][:k]
        J = torch.stack(cols, -1)                                    # (n,c,h,w,k)
        ar = r.abs().sum(1)                                          # per pixel: a local edit is left out whole
        med = torch.where(valid, ar, torch.full_like(ar, float("nan"))).flatten(1).nanmedian(1).values
        keep = valid & (ar <= 3.0 * med.view(n, 1, 1) + 1e-9)
        wgt = keep.to(dt).unsqueeze(1)
        Jw = J * wgt.unsqueeze(-1)
        Jf, Jwf = J.reshape(n, -1, k), Jw.reshape(n, -1, k)
        H = Jwf.transpose(1, 2) @ Jf + 1e-9 * torch.eye(k, dtype=dt, device=dev)
        g = (Jwf.transpose(1, 2) @ r.reshape(n, -1, 1))[..., 0]
        step = torch.linalg.solve(H, -g.unsqueeze(-1))[..., 0]
        theta[:, :k] = theta[:, :k] + step
        kept = keep.to(dt).flatten(1).sum(1) / valid.to(dt).flatten(1).sum(1).clamp_min(1.0)
        if step.abs().max() < 1e-5:
            break
    return theta, kept


def _score(src: torch.Tensor, moved: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Median per-pixel residual (summed over channels) of the structure images under ``theta``, inside the frame."""
    sampled, valid = warp(moved.double(), theta.double())
    ar = (sampled - src.double()).abs().sum(1)
    return torch.where(valid, ar, torch.full_like(ar, float("nan"))).flatten(1).nanmedian(1).values


def register(before: torch.Tensor, after: torch.Tensor, align: str = "similarity"):
    """Register ``after`` onto ``before``, both ``(B,3,H,W)`` at the same size (resize first).

    Returns ``(aligned, valid, transforms)``: ``aligned`` ``(B,3,H,W)`` (``after`` itself, the same tensor, where every
    fit is the identity), ``valid`` bool ``(B,H,W)`` (False where the editor's frame does not reach) or None, and one
    :class:`Transform` per image."""
    check_choice(align, ALIGN, "align")
    n, _, h, w = before.shape
    if align == "off":
        return after, None, [Transform() for _ in range(n)]
    coarse_src, coarse_mov = structure(before, COARSE_SIDE), structure(after, COARSE_SIDE)
    ch = coarse_src.shape[-1] / w
    theta = _coarse(coarse_src, coarse_mov, SCALES if align == "similarity" else (1.0,))
    fine_src, fine_mov = structure(before, FINE_SIDE), structure(after, FINE_SIDE)
    f = fine_src.shape[-1] / w
    theta[:, :2] = theta[:, :2] * (f / ch)
    theta, kept = _refine(fine_src, fine_mov, theta, align == "similarity")
    better = _score(fine_src, fine_mov, theta) < ACCEPT * _score(fine_src, fine_mov, torch.zeros_like(theta))
    theta[:, :2] = theta[:, :2] / f
    transforms, moves = [], []
    corners = torch.tensor([[-(w - 1) / 2, -(h - 1) / 2], [(w - 1) / 2, -(h - 1) / 2], [-(w - 1) / 2, (h - 1) / 2],
                            [(w - 1) / 2, (h - 1) / 2]], dtype=theta.dtype)
    for i in range(n):
        tx, ty, a, b = (float(v) for v in theta[i])
        shift = ((a * corners[:, 0] - b * corners[:, 1] + tx) ** 2 + (b * corners[:, 0] + a * corners[:, 1] + ty) ** 2)
        moved = float(shift.sqrt().max())
        ident = moved < IDENTITY_PX or not bool(better[i])
        moves.append(not ident)
        transforms.append(Transform(dx=tx, dy=ty, scale=math.hypot(1 + a, b), rotation=math.degrees(math.atan2(b, 1 + a)),
                                    identity=ident, confidence=float(kept[i])))
    if not any(moves):
        return after, None, transforms
    use = theta.clone()
    for i, m in enumerate(moves):
        if not m:
            use[i] = 0.0
    aligned, valid = warp(after, use.to(after.dtype))
    aligned = aligned.clamp(0.0, 1.0)
    for i, m in enumerate(moves):   # identity fits: the picture as it is, bit for bit
        if not m:
            aligned[i] = after[i]
            valid[i] = True
    return aligned, valid, transforms
