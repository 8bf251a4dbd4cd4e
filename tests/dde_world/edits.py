"""Synthetic before/after pairs with a known changed region (what an instruction editor does).

The editor recolours a rectangle, shifts every pixel's colour by a few percent (a per-channel
gain and offset) and adds per-pixel noise."""

from __future__ import annotations

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
