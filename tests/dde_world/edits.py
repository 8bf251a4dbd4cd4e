"""Synthetic before/after pairs with a known changed region (what an instruction editor does).

The editor recolours a rectangle, shifts every pixel's colour by a few percent (a per-channel
gain and offset) and adds per-pixel noise."""

from __future__ import annotations

import math

import torch


def synthetic_edit(seed: int = 0, size: int = 96, gain=(1.04, 0.97, 1.03), offset=(0.02, -0.01, 0.015),
                   noise: float = 0.01, colour=(0.85, 0.2, 0.15), box=(30, 20, 66, 60)):
    """``(before, after, region)``: IMAGEs ``(1,H,W,3)`` in 0..1 and the bool ``(H,W)`` changed region."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    before = torch.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.6 - 0.3 * x * y], -1)
    before = before + 0.1 * torch.sin(20 * x + 7 * y).unsqueeze(-1) * torch.tensor([1.0, -0.5, 0.3])
    before = before.clamp(0, 1)
    region = torch.zeros(size, size, dtype=torch.bool)
    y0, x0, y1, x1 = box
    region[y0:y1, x0:x1] = True
    after = before.clone()
    after[region] = torch.tensor(colour)
    after = after * torch.tensor(gain) + torch.tensor(offset)
    after = after + noise * torch.randn(after.shape, generator=g)
    return before.unsqueeze(0), after.clamp(0, 1).unsqueeze(0), region


def example_edited(scene_png: str, mask_png: str, out_png: str, seed: int = 0) -> None:
    """workflows/inputs/example_edited.png: the example scene as an instruction editor returns it
    (the masked object recoloured, every pixel's colour shifted by a few percent, mild noise)."""
    import numpy as np
    from PIL import Image

    scene = torch.from_numpy(np.asarray(Image.open(scene_png).convert("RGB")).astype(np.float32) / 255.0)
    mask = torch.from_numpy(np.asarray(Image.open(mask_png).convert("L")) > 127)
    g = torch.Generator().manual_seed(seed)
    after = scene.clone()
    shade = scene[mask].mean(-1, keepdim=True)
    after[mask] = (shade * torch.tensor([1.4, 1.25, 0.3])).clamp(0, 1)     # the ball turns golden
    after = after * torch.tensor([1.03, 0.98, 1.02]) + torch.tensor([0.01, -0.005, 0.01])
    after = after + (1.5 / 255.0) * torch.randn(after.shape, generator=g)
    Image.fromarray((after.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()).save(out_png)


def _scene(px: torch.Tensor, py: torch.Tensor, seed: int) -> torch.Tensor:
    """A textured scene at continuous source coordinates (pixels): a colour ramp, 60 soft blobs of 3-14 px and
    three gratings; ``(..., 3)`` in 0.08..0.88."""
    g = torch.Generator().manual_seed(1000 + seed)
    size = 256.0
    out = torch.stack([0.25 + 0.4 * px / size, 0.3 + 0.3 * py / size, 0.55 - 0.2 * (px + py) / (2 * size)], -1)
    centres = torch.rand(60, 2, generator=g) * size
    sigmas = 3.0 + 11.0 * torch.rand(60, generator=g)
    colours = (torch.rand(60, 3, generator=g) - 0.5) * 0.5
    for (cx, cy), s, c in zip(centres.tolist(), sigmas.tolist(), colours):
        out = out + c * torch.exp(-((px - cx) ** 2 + (py - cy) ** 2) / (2 * s * s)).unsqueeze(-1)
    for k in range(3):
        ang = float(torch.rand(1, generator=g)) * math.pi
        freq = 2 * math.pi / (9.0 + 6.0 * k)
        out = out + 0.05 * torch.sin(freq * (px * math.cos(ang) + py * math.sin(ang))).unsqueeze(-1) * torch.tensor(
            [1.0, -0.6, 0.4])
    return 0.08 + 0.8 * out.clamp(0, 1)     # 0.08..0.88: the editor's colour shift never saturates


def geometric_edit(seed: int = 0, size: int = 256, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0,
                   rotation: float = 0.0, out_size=None, box=(80, 72, 176, 168), colour=(0.85, 0.2, 0.15),
                   gain=(1.04, 0.97, 1.03), offset=(0.02, -0.01, 0.015), noise: float = 0.01, restyle: bool = False):
    """``(before, after, region)`` as an instruction editor returns them: the scene redrawn shifted by ``(dx, dy)``
    source pixels, zoomed by ``scale`` and turned by ``rotation`` degrees about the centre, at ``out_size``
    ``(h, w)`` (default: the source's), one rectangle ``box`` (y0, x0, y1, x1 in source pixels) recoloured,
    the editor's colour shift and noise. A source pixel ``p`` is drawn at ``q = s R (p - c) + c + (dx, dy)``
    (source pixel units; the output grid spans the same frame). ``restyle``: every pixel's colour remapped
    (a global restyle no geometry explains). ``region``: the bool ``(size, size)`` rectangle."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    before = _scene(xs, ys, seed)
    ho, wo = out_size or (size, size)
    v, u = torch.meshgrid(torch.arange(ho, dtype=torch.float32), torch.arange(wo, dtype=torch.float32), indexing="ij")
    qx, qy = (u + 0.5) * size / wo - 0.5, (v + 0.5) * size / ho - 0.5     # the output grid in source pixels
    c = (size - 1) / 2.0
    th = math.radians(rotation)
    rx, ry = qx - c - dx, qy - c - dy                                      # p = R^-1 (q - c - t) / s + c
    px = (math.cos(th) * rx + math.sin(th) * ry) / scale + c
    py = (-math.sin(th) * rx + math.cos(th) * ry) / scale + c
    after = _scene(px, py, seed)
    y0, x0, y1, x1 = box
    # the rectangle covers the source pixels y0..y1-1, x0..x1-1: their squares [x0 - 0.5, x1 - 0.5)
    inside = (px >= x0 - 0.5) & (px < x1 - 0.5) & (py >= y0 - 0.5) & (py < y1 - 0.5)
    after[inside] = torch.tensor(colour, dtype=after.dtype)
    if restyle:
        after = torch.stack([after[..., 2], 1 - after[..., 0], 0.5 * (after[..., 1] + after[..., 0])], -1)
    after = after * torch.tensor(gain) + torch.tensor(offset)
    after = after + noise * torch.randn(after.shape, generator=g)
    region = torch.zeros(size, size, dtype=torch.bool)
    region[y0:y1, x0:x1] = True
    return before.unsqueeze(0), after.clamp(0, 1).unsqueeze(0), region
