"""Several edits at once: each concept's region, the change map of all of them, and the weights of regional conditioning.

``k`` edit concepts (a query and a reference each) give ``k`` DiffEdit heats and masks of the same picture
(``diffedit_math``). Here they become one edit:

* **Overlaps** — a pixel inside several concepts' masks belongs to the concept whose normalised heat is
  largest there; on a tie, to the earlier concept (chain order). Every pixel belongs to at most one concept:
  the *regions* are disjoint and their union is the union of the masks.
* **Change map** — ``sum_i strength_i * region_i``: each concept's strength inside its region, 0 outside every
  mask (kept bit-exact by the Differential KSampler).
* **Regional weights** — what ComfyUI's ``ConditioningSetMask`` is given on the latent grid: a latent cell any
  region touches takes the predictions of the concepts touching it (in proportion to the area each covers, the
  area average a change map is fitted to the latent grid with), a cell no region touches takes the base
  conditioning's. The weights of a cell add up to 1; ComfyUI's ``calc_cond_batch`` blends the predictions by them.

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .maps import resample


def regions(heats: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Disjoint regions ``(k,B,H,W)`` (0/1 float32) from the concepts' heats and binary masks (both ``(k,B,H,W)``).

    A pixel covered by several masks goes to the concept with the largest heat among them (ties: the first).
    """
    if heats.shape != masks.shape or heats.ndim != 4:
        raise InputError("masks", "k heats and k masks of one shape (k, B, H, W)",
                         f"{tuple(heats.shape)} and {tuple(masks.shape)}")
    covered = masks > 0
    score = torch.where(covered, heats.to(torch.float32), torch.full_like(heats, -torch.inf, dtype=torch.float32))
    best = torch.argmax(score, dim=0, keepdim=True)   # the first largest on ties
    owner = torch.arange(heats.shape[0], device=heats.device).view(-1, 1, 1, 1) == best
    return (owner & covered).to(torch.float32)


def change_map(regions_: torch.Tensor, strengths) -> torch.Tensor:
    """``(B,H,W)``: each concept's strength inside its region, 0 outside every region."""
    s = torch.as_tensor([float(v) for v in strengths], dtype=torch.float32).view(-1, 1, 1, 1)
    if s.shape[0] != regions_.shape[0]:
        raise InputError("strengths", f"one strength per concept ({regions_.shape[0]})", f"{s.shape[0]}")
    return (regions_ * s).sum(0)


def regional_weights(regions_: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights on the latent grid ``size`` = (h, w): concept weights ``(k,B,h,w)`` and the base's ``(B,h,w)``.

    A cell some region touches belongs to the concepts that touch it, shared in proportion to the area each region
    covers there (a cell one concept touches is that concept's alone, weight exactly 1), and the base's weight is 0;
    a cell no region touches is the base's (weight exactly 1). How far a partly covered cell changes is the
    change map's business (its fitted value there is the covered area times the strength); the conditioning
    only says what the cell becomes.
    """
    k, b, h, w = regions_.shape
    area = resample(regions_.reshape(k * b, h, w), size).reshape(k, b, *size).clamp(0.0, 1.0)
    touched = area.sum(0)
    concept = torch.where(touched > 0, area / touched.clamp(min=1e-30), torch.zeros_like(area))
    return concept.contiguous(), (touched <= 0).to(torch.float32)
