"""Validation of inputs: numbers, integers, choices, LATENT and CONDITIONING (MASK: ``maps.as_maps``; IMAGE:
``pixels.as_images``). Each raises :class:`InputError` naming the input.

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math

import torch

from .errors import InputError, describe


def _span(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    return f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{')' if hi_open else ']'}"


def check_number(value, input_name: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in ``[lo, hi]`` (``lo_open``/``hi_open`` exclude that end); returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(input_name, "a finite number", describe(value))
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        raise InputError(input_name, f"a number in {_span(lo, hi, lo_open, hi_open)}", repr(value))
    return float(value)


def check_integer(value, input_name: str, lo: int | None = None, hi: int | None = None, what: str = "") -> int:
    """A whole number (an int, not a bool) in ``[lo, hi]``; returns it. ``what``: the unit in the message ("pixels")."""
    bound = ("" if lo is None and hi is None else f" in [{lo}, {hi}]" if lo is not None and hi is not None
             else f" >= {lo}" if lo is not None else f" <= {hi}")
    expected = f"a whole number{f' of {what}' if what else ''}{bound}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(input_name, expected, describe(value))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InputError(input_name, expected, repr(value))
    return value


def check_choice(value, choices, input_name: str) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise InputError(input_name, "one of " + ", ".join(repr(c) for c in choices), repr(value))
    return value


def as_latent(latent, input_name: str = "latent_image", dims: tuple[int, ...] = (4, 5)) -> torch.Tensor:
    """The ``samples`` tensor of a LATENT dict: ``dims``-D, non-empty, finite."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.is_nested or samples.ndim not in dims or samples.numel() == 0:
        kinds = " or ".join({4: "an image LATENT (batch, channels, height, width)",
                             5: "a video LATENT (batch, channels, frames, height, width)"}[d] for d in dims)
        raise InputError(input_name, kinds, describe(samples))
    if not bool(torch.isfinite(samples).all()):
        raise InputError(input_name, "finite latent values", "NaN or infinite values")
    check_noise_mask(latent, input_name)
    return samples


def check_noise_mask(latent: dict, input_name: str = "latent_image"):
    """A LATENT's ``noise_mask`` (Set Latent Noise Mask, inpainting), when it has one: a non-empty tensor of finite
    values. NaN has no reading as "how much may change" (a sampler would silently ignore or spread it)."""
    mask = latent.get("noise_mask")
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.numel() == 0:
        raise InputError(input_name, "a noise_mask that is a non-empty MASK", describe(mask))
    if not bool(torch.isfinite(mask).all()):
        raise InputError(input_name, "a noise_mask of finite values in 0..1", "a noise_mask with NaN or infinite values")


def check_conditioning(cond, input_name: str, optional: bool = False):
    """A CONDITIONING: a non-empty list of ``[tensor, dict]`` pairs (None allowed when ``optional``)."""
    if cond is None and optional:
        return None
    ok = isinstance(cond, list) and len(cond) > 0 and all(
        isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], torch.Tensor) and isinstance(c[1], dict)
        for c in cond)
    if not ok:
        raise InputError(input_name, "a CONDITIONING (for example from CLIP Text Encode)", describe(cond))
    return cond
