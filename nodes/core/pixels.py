"""Pixel-space helpers: IMAGE validation and compositing the original back by a change map.

Pure torch + kornia; nothing here imports ComfyUI.
"""

from __future__ import annotations

import torch

from .errors import InputError, describe
from .maps import blur_maps, match_batch, resize_maps


def as_images(image, input_name: str) -> torch.Tensor:
    """Validate an IMAGE ``(B,H,W,C)`` float tensor; returns it as float32 (NaN/inf are an error)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.numel() == 0:
        raise InputError(input_name, "an IMAGE of shape (batch, height, width, channels)", describe(image))
    if not image.is_floating_point():
        raise InputError(input_name, "a floating-point IMAGE (0..1)", describe(image))
    image = image.to(torch.float32)
    if not bool(torch.isfinite(image).all()):
        raise InputError(input_name, "finite pixel values", "NaN or infinite values")
    return image


def feather_weights(weights: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian-blur ``(B,H,W)`` weights by ``radius`` px, then zero them where they were 0."""
    if radius <= 0:
        return weights
    blurred = blur_maps(weights, radius)
    return torch.where(weights > 0, blurred, torch.zeros_like(blurred))


def composite(original, edited, maps: torch.Tensor, blend: str, feather: int) -> torch.Tensor:
    """``original * (1 - w) + edited * w`` with ``w`` from the map; ``w == 0`` gives the original bit-exactly."""
    orig = as_images(original, "original")
    edit = as_images(edited, "edited")
    if orig.shape[1:] != edit.shape[1:]:
        raise InputError("edited", f"an IMAGE of the original's size and channels {tuple(orig.shape[1:])}",
                             f"{tuple(edit.shape[1:])}")
    batch = max(orig.shape[0], edit.shape[0])
    orig = match_batch(orig, batch, "original", "other image's batch")
    edit = match_batch(edit, batch, "edited", "other image's batch")
    weights = match_batch(resize_maps(maps, orig.shape[1:3]), batch, "change_map", "image batch")
    if blend == "changed":
        weights = (weights > 0).to(weights.dtype)
    elif blend != "map":
        raise InputError("blend", "'map' or 'changed'", repr(blend))
    w = feather_weights(weights, feather).unsqueeze(-1)
    out = orig * (1.0 - w) + edit * w
    return torch.where(w > 0, out, orig)
