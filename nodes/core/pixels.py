"""Pixel-space helpers: IMAGE validation and compositing the original back by a change map.

Pure torch + kornia; nothing here imports ComfyUI.
"""

from __future__ import annotations

import torch

from .errors import InputError, describe
from .maps import blur_maps, match_batch, resize_maps
from .validate import check_number


#: the channel counts an IMAGE may have: 1 = grey, 3 = RGB, 4 = RGBA (every node reads grey as R = G = B
#: and ignores alpha unless it asks for it); any other count is an error naming the input
IMAGE_CHANNELS = (1, 3, 4)


def as_images(image, input_name: str) -> torch.Tensor:
    """Validate an IMAGE ``(B,H,W,C)`` float tensor, ``C`` in :data:`IMAGE_CHANNELS`; returns it as float32
    (NaN/inf are an error)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.numel() == 0:
        raise InputError(input_name, "an IMAGE of shape (batch, height, width, channels)", describe(image))
    if int(image.shape[-1]) not in IMAGE_CHANNELS:
        raise InputError(input_name, "an IMAGE with 1 (grey), 3 (RGB) or 4 (RGBA) channels",
                         f"{int(image.shape[-1])} channels ({describe(image)})")
    if not image.is_floating_point():
        raise InputError(input_name, "a floating-point IMAGE (0..1)", describe(image))
    image = image.to(torch.float32)
    if not bool(torch.isfinite(image).all()):
        raise InputError(input_name, "finite pixel values", "NaN or infinite values")
    return image


def rgb(image: torch.Tensor) -> torch.Tensor:
    """A validated IMAGE ``(B,H,W,C)`` as RGB ``(B,H,W,3)``: grey repeated, alpha dropped."""
    return image.expand(*image.shape[:-1], 3) if image.shape[-1] == 1 else image[..., :3]


def feather_weights(weights: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian-blur ``(B,H,W)`` weights by ``radius`` px, then zero them where they were 0."""
    if radius <= 0:
        return weights
    blurred = blur_maps(weights, radius)
    return torch.where(weights > 0, blurred, torch.zeros_like(blurred))


def adaptive_weights(difference: torch.Tensor, maps: torch.Tensor, threshold: float, contrast: float,
                     influence: float) -> torch.Tensor:
    """A1111 soft inpainting's adaptive composite, per pixel, in 0..1 (0 = the original exactly).

    A1111 (``apply_adaptive_masks``): ``s = 0.5 (1 - influence) + (1 - m^(scale/2)) influence``
    with its default ``mask_blend_scale`` 0.5 (so ``m^0.25``); ``T = threshold * s / (1 - s)``
    (the difference where the original's opacity halves); ``w = 1 - smootherstep(1 / (1 + (d /
    T)^contrast))``. Here the same curve starts *at* ``T``: ``w = 0`` for ``d <= T`` (the original
    exactly) and ``w = 1 - smootherstep(1 / (1 + ((d - T) / T)^contrast))`` above, so ``w`` is
    continuous at ``T``, is 0.5 at ``2 T`` and tends to 1. ``influence`` 0: ``T = threshold``
    everywhere; 1: ``T`` grows where the map is low (kept regions snap back sooner) and is 0
    where the map is 1. ``d``: the per-pixel edit difference (Euclidean over the channels).
    """
    s = 0.5 * (1.0 - influence) + (1.0 - maps.clamp(0.0, 1.0) ** 0.25) * influence
    t = threshold * s / (1.0 - s).clamp_min(1e-5)
    excess = (difference - t).clamp_min(0.0) / t.clamp_min(1e-12)
    x = 1.0 / (1.0 + excess ** contrast)
    w = 1.0 - x * x * x * (x * (6.0 * x - 15.0) + 10.0)
    return torch.where(difference > t, w, torch.zeros_like(w))


def composite(original, edited, maps: torch.Tensor, blend: str, feather: int,
              difference_threshold: float = 0.0, difference_contrast: float = 2.0,
              mask_influence: float = 0.0) -> torch.Tensor:
    """``original * (1 - w) + edited * w`` with ``w`` from the map; ``w == 0`` gives the original bit-exactly.

    ``difference_threshold`` > 0 multiplies ``w`` by :func:`adaptive_weights` of the per-pixel
    edit difference ``|edited - original|`` (Euclidean over the channels, 0..1 values): pixels
    the edit changed by at most the threshold come back as the original exactly. At 0 (default)
    the composite is the plain map blend.
    """
    orig = as_images(original, "original")
    edit = as_images(edited, "edited")
    if orig.shape[1:] != edit.shape[1:]:
        raise InputError("edited", f"an IMAGE of the original's size and channels {tuple(orig.shape[1:])}",
                             f"{tuple(edit.shape[1:])}")
    batch = max(orig.shape[0], edit.shape[0])
    orig = match_batch(orig, batch, "original", "other image's batch")
    edit = match_batch(edit, batch, "edited", "other image's batch")
    weights = raw = match_batch(resize_maps(maps, orig.shape[1:3]), batch, "change_map", "image batch")
    if blend == "changed":
        weights = (weights > 0).to(weights.dtype)
    elif blend != "map":
        raise InputError("blend", "'map' or 'changed'", repr(blend))
    w = feather_weights(weights, feather)
    check_number(difference_threshold, "difference_threshold", 0.0)
    check_number(difference_contrast, "difference_contrast", 0.0)
    check_number(mask_influence, "mask_influence", 0.0, 1.0)
    if difference_threshold > 0:
        d = torch.linalg.vector_norm(edit - orig, dim=-1)
        w = w * adaptive_weights(d, raw, float(difference_threshold), float(difference_contrast),
                                 float(mask_influence))
    w = w.unsqueeze(-1)
    out = orig * (1.0 - w) + edit * w
    return torch.where(w > 0, out, orig)
