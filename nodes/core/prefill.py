"""Room for new content: what strongly changed pixels start from (A1111's "masked content").

Differential Diffusion keeps a pixel on the original (noised) until its start step, so a pixel
freed late starts from the original and the model tends to keep it. A *pre-fill* replaces the
original of the pixels whose map value is above ``level`` with other content in the latent the
sampler starts from and blends kept pixels with — never the pixels at or below ``level`` (so
map-0 pixels stay bit-exact):

``original``        nothing changes (the default).
``fill``            colour from the surroundings: the region is set to the mean of the other
                    pixels, then repeatedly replaced by Gaussian blurs of the whole latent at
                    radii ``max(h, w) / 2, / 4, ..., 1`` (2 passes each), the pixels outside the
                    region put back after every pass, so their colours flow inwards.
``latent noise``    ``N(0, 1)`` in the model's latent space (seeded).
``latent nothing``  zeros in the model's latent space.

Pure torch: nothing here imports ComfyUI.
"""

from __future__ import annotations

import torch

from .maps import blur_maps

PREFILL = ("original", "fill", "latent noise", "latent nothing")


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    """``(B,C,h,w)`` or ``(B,C,T,h,w)`` -> ``(B*, C, h, w)`` (frames folded into the batch)."""
    if x.ndim == 5:
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    return x


def _from_4d(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.ndim == 5:
        b, c, t, h, w = like.shape
        return x.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
    return x


def fill_from_surroundings(latent: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``latent`` with the ``region`` (bool, broadcastable ``(B,1,...)``) filled from the pixels around it."""
    x = _as_4d(latent.to(torch.float32))
    r = _as_4d(region.expand(latent.shape[0], 1, *latent.shape[2:]).to(torch.float32)) > 0.5
    known = (~r).to(x.dtype)
    count = known.sum(dim=(2, 3), keepdim=True)
    mean = torch.where(count > 0, (x * known).sum(dim=(2, 3), keepdim=True) / count.clamp_min(1.0),
                       x.mean(dim=(2, 3), keepdim=True))
    f = torch.where(r, mean.expand_as(x), x)
    b, c, h, w = x.shape
    radius = max(h, w) // 2
    while radius >= 1:
        for _ in range(2):
            blurred = blur_maps(f.reshape(b * c, h, w), radius).reshape(b, c, h, w)
            f = torch.where(r, blurred, x)
        radius //= 2
    return _from_4d(f, latent).to(latent.dtype)


def prefill(latent: torch.Tensor, strength_map: torch.Tensor, level: float, method: str,
            noise: torch.Tensor | None = None, nothing: torch.Tensor | None = None) -> torch.Tensor:
    """The starting latent: ``latent`` where ``map <= level``, the pre-fill where ``map > level``.

    ``strength_map``: ``(B,1,...)`` on the latent grid. ``noise``/``nothing``: latents of
    ``latent``'s shape holding the model-space noise / zeros expressed in ``latent``'s space
    (the caller converts). ``original`` returns ``latent`` itself.
    """
    if method == "original":
        return latent
    region = strength_map.to(latent.device) > float(level)
    if method == "fill":
        content = fill_from_surroundings(latent, region)
    elif method == "latent noise":
        content = noise
    elif method == "latent nothing":
        content = nothing
    else:
        raise ValueError(f"unknown pre-fill {method!r}")
    return torch.where(region, content.to(latent.device, latent.dtype), latent)
