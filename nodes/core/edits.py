"""A change map from a before/after picture pair (what a mask-free editor changed).

Mask-free editors (instruction editors, img2img) redraw the whole picture and shift colours a
little everywhere. :func:`change_map_from_edit` finds what they meant to change:

1. ``after`` is resized to ``before``'s size if needed (bilinear, antialiased) and one picture
   broadcasts over the other's batch.
   With ``align`` (``shift`` / ``similarity``, :mod:`register`) ``after`` is then registered onto ``before``
   (the editor's shift, zoom and turn undone); where the editor's frame does not reach, ``before`` stands.
2. Optional global colour match of ``after`` onto ``before`` on *robust* pixels (the ones the
   edit did not change): ``affine`` fits ``after_c * a_c + b_c ~ before_c`` per channel by least
   squares; ``mean/std`` matches each channel's mean and standard deviation. Three rounds, each
   fitted on the pixels whose residual under the previous fit (the first: no change) is at most
   ``3 x median + 0.01`` (summed absolute RGB residual), so the edited region is left out.
3. Perceptual difference ``dE`` = Euclidean distance in CIELAB (CIE76, ``kornia.color.rgb_to_lab``,
   sRGB D65; 1 is about a just-noticeable difference), then a 3 x 3 median filter (removes
   single-pixel noise and compression specks, keeps edges where they are).
4. ``t = clamp((dE - noise_floor) / (full_change - noise_floor), 0, 1)``.
5. ``grow`` > 0 dilates, < 0 erodes ``t`` by a square of ``2 |grow| + 1`` px (grey morphology, :func:`maps.grow`).
6. ``mask = t >= 0.5`` (after grow); ``change_map = blur(t, softness)`` (Gaussian, kernel
   ``2 softness + 1``, so the map is exactly 0 farther than ``softness`` px from any change).

Pure torch + kornia: nothing here imports ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from . import register
from .construct import ramp
from .errors import InputError
from .maps import blur_maps, match_batch
from .maps import grow as grow_maps
from .pixels import as_images, rgb
from .validate import check_choice, check_integer, check_number

MATCH = ("affine", "mean/std", "none")
ROUNDS = 3


def _rgb(img: torch.Tensor) -> torch.Tensor:
    """A validated IMAGE ``(B,H,W,C)`` -> ``(B,3,H,W)``: grey is repeated, alpha dropped."""
    return rgb(img).permute(0, 3, 1, 2).clamp(0.0, 1.0)


def match_colours(before: torch.Tensor, after: torch.Tensor, method: str, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``after`` ``(B,3,H,W)`` with a per-image, per-channel affine colour map fitted onto ``before`` (on the pixels
    where the bool ``(B,H,W)`` ``valid`` holds, all when None)."""
    if method == "none":
        return after
    dims = (2, 3)
    a = torch.ones(after.shape[0], after.shape[1], 1, 1, dtype=after.dtype, device=after.device)
    b = torch.zeros_like(a)
    for _ in range(ROUNDS):
        residual = (after * a + b - before).abs().sum(1, keepdim=True)
        median = residual.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
        keep = residual <= 3.0 * median + 0.01
        keep = (keep if valid is None else keep & valid.unsqueeze(1)).to(after.dtype)
        n = keep.sum(dims, keepdim=True).clamp_min(1.0)
        mx = (after * keep).sum(dims, keepdim=True) / n
        my = (before * keep).sum(dims, keepdim=True) / n
        dx, dy = after - mx, before - my
        vx = (dx * dx * keep).sum(dims, keepdim=True) / n
        if method == "affine":
            cov = (dx * dy * keep).sum(dims, keepdim=True) / n
            a = torch.where(vx > 1e-8, cov / vx.clamp_min(1e-8), torch.ones_like(vx))
        else:   # mean/std
            vy = (dy * dy * keep).sum(dims, keepdim=True) / n
            a = torch.where(vx > 1e-8, torch.sqrt(vy / vx.clamp_min(1e-8)), torch.ones_like(vx))
        b = my - a * mx
    return (after * a + b).clamp(0.0, 1.0)


def delta_e(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """CIE76 colour difference of two ``(B,3,H,W)`` sRGB pictures in 0..1 -> ``(B,H,W)``."""
    lab_b = kornia.color.rgb_to_lab(before)
    lab_a = kornia.color.rgb_to_lab(after)
    return torch.linalg.vector_norm(lab_b - lab_a, dim=1)


def median3(d: torch.Tensor) -> torch.Tensor:
    """3 x 3 median filter of ``(B,H,W)`` (kornia, zero-padded borders count as values)."""
    return kornia.filters.median_blur(d.unsqueeze(1), (3, 3))[:, 0]


@dataclass(frozen=True)
class EditChange:
    """What :func:`edit_change` found: the maps ``(B,H,W)``, the registered edited picture ``(B,H,W,3)`` at
    ``before``'s size (out of the editor's frame: ``before``) and the fitted geometry of each image."""
    change_map: torch.Tensor
    mask: torch.Tensor
    aligned: torch.Tensor
    transforms: list


def change_map_from_edit(before, after, match: str = "affine", noise_floor: float = 6.0, full_change: float = 15.0,
                         grow: int = 0, softness: int = 0, align: str = "off") -> tuple[torch.Tensor, torch.Tensor]:
    """``(change_map, mask)``, both float32 ``(B,H,W)`` at ``before``'s size (see the module docstring)."""
    found = edit_change(before, after, match, noise_floor, full_change, grow, softness, align)
    return found.change_map, found.mask


def edit_change(before, after, match: str = "affine", noise_floor: float = 6.0, full_change: float = 15.0,
                grow: int = 0, softness: int = 0, align: str = "off") -> EditChange:
    """The change map, mask, registered picture and geometry of a before/after pair (module docstring)."""
    b_img = as_images(before, "before")
    a_img = as_images(after, "after")
    check_choice(match, MATCH, "color_match")
    check_choice(align, register.ALIGN, "align")
    floor = check_number(noise_floor, "noise_floor", 0.0, None)
    full = check_number(full_change, "full_change", 0.0, None)
    if full < floor:
        raise InputError("full_change", f"at least noise_floor ({floor})", repr(full_change))
    grow = check_integer(grow, "grow", what="pixels")
    softness = check_integer(softness, "softness", 0)
    bb, aa = _rgb(b_img), _rgb(a_img)
    if aa.shape[-2:] != bb.shape[-2:]:
        aa = F.interpolate(aa, size=bb.shape[-2:], mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    batch = max(bb.shape[0], aa.shape[0])
    bb = match_batch(bb, batch, "before", "other image's batch")
    aa = match_batch(aa, batch, "after", "other image's batch")
    aa, valid, transforms = register.register(bb, aa, align)
    if valid is not None:   # where the editor's frame does not reach, the source stands (no change)
        aa = torch.where(valid.unsqueeze(1), aa, bb)
    aligned = aa
    aa = match_colours(bb, aa, match, valid)
    if valid is not None:
        aa = torch.where(valid.unsqueeze(1), aa, bb)
    t = ramp(median3(delta_e(bb, aa)), floor, full)
    t = grow_maps(t, grow).clamp(0.0, 1.0)
    mask = (t >= 0.5).to(torch.float32)
    return EditChange(blur_maps(t, softness).clamp(0.0, 1.0).contiguous(), mask.contiguous(),
                      aligned.permute(0, 2, 3, 1).contiguous(), transforms)
