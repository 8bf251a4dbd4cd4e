"""Facts a user cannot see in the picture: a map stretched to another aspect ratio, an empty or full
mask, grey map values a short schedule cannot render.

Each function returns the facts (numbers) or ``None`` when there is nothing to say; the node layer
words them with the node's and the input's names (``nodes/messages.py``). Pure torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: a map is "stretched" when fitting it to the latent grid moves an edge by more than this many latent cells
STRETCH_CELLS = 1.0
#: grey values "collapse" when more than this fraction of the grey cells get no free step or every step
COLLAPSE_FRACTION = 0.5


@dataclass(frozen=True)
class Stretch:
    map_size: tuple[int, int]       # (height, width) of the map
    latent_size: tuple[int, int]    # (height, width) of the latent grid
    cells: float                    # how far the map's aspect is off, in latent cells


def aspect_mismatch(maps: torch.Tensor, latent_size) -> Stretch | None:
    """Whether fitting ``(B,H,W)`` maps to a latent grid ``(h, w)`` distorts them (a uniform map never does)."""
    mh, mw = int(maps.shape[-2]), int(maps.shape[-1])
    lh, lw = int(latent_size[0]), int(latent_size[1])
    cells = max(abs(mw * lh / mh - lw), abs(mh * lw / mw - lh))
    if cells <= STRETCH_CELLS or bool(maps.amin() == maps.amax()):
        return None
    return Stretch((mh, mw), (lh, lw), float(cells))


@dataclass(frozen=True)
class Coverage:
    empty: list[int]     # batch indices whose mask is all 0
    full: list[int]      # batch indices whose mask is all 1
    batch: int


def mask_coverage(mask: torch.Tensor) -> Coverage | None:
    """Masks ``(B,...)`` that select nothing (all 0) or everything (all 1)."""
    flat = mask.reshape(mask.shape[0], -1)
    empty = [int(i) for i in torch.nonzero(flat.amax(dim=1) <= 0).flatten()]
    full = [int(i) for i in torch.nonzero(flat.amin(dim=1) >= 1).flatten()]
    if not empty and not full:
        return None
    return Coverage(empty, full, int(mask.shape[0]))


@dataclass(frozen=True)
class Levels:
    n_steps: int          # steps of the whole schedule
    possible: int         # distinct strengths a run of n_steps can render (n_steps + 1)
    rendered: int         # distinct effective strengths this map gets
    grey: int             # latent cells with a value strictly between 0 and 1
    to_keep: int          # grey cells that get no free step (kept exactly)
    to_full: int          # grey cells that get every step (changed fully)

    @property
    def collapsed(self) -> bool:
        return self.grey > 0 and (self.to_keep + self.to_full) > COLLAPSE_FRACTION * self.grey


def render_levels(strength_map: torch.Tensor, free: torch.Tensor, n_steps: int) -> Levels:
    """How many strengths a run renders: ``strength_map`` the map on the latent grid, ``free`` its free
    steps per cell (same shape, 0..n_steps)."""
    g = strength_map.to(torch.float32).reshape(-1).cpu()
    f = free.to(torch.float32).reshape(-1).cpu()
    grey = (g > 0) & (g < 1)
    return Levels(n_steps=int(n_steps), possible=int(n_steps) + 1, rendered=int(torch.unique(f).numel()),
                  grey=int(grey.sum()), to_keep=int((grey & (f <= 0)).sum()), to_full=int((grey & (f >= n_steps)).sum()))


def has_grey(maps: torch.Tensor) -> bool:
    """Whether maps with values in 0..1 hold any value strictly between 0 and 1."""
    return bool(maps.frac().any())   # frac(x) = x for 0 <= x < 1 and 0 for x = 1: nonzero exactly on greys
