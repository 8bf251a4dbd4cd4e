"""Pictures of what a change map does: labelled grids, the Strength Fan, schedule previews.

IMAGE tensors are ``(B,H,W,3)`` floats in 0..1. Labels are drawn with Pillow's bundled font.
Pure torch + numpy + Pillow; nothing here imports ComfyUI.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont

from .maps import grow
from .errors import InputError

NEVER_COLOUR = (0.0, 0.0, 0.0)
#: start-step colours from the first step (yellow: sampled the whole way) to the last (dark blue)
RAMP = ((0.99, 0.91, 0.15), (0.37, 0.79, 0.38), (0.13, 0.57, 0.55), (0.23, 0.32, 0.55), (0.27, 0.0, 0.33))


def parse_strengths(text: str, input_name: str = "strengths", limit: int = 64) -> list[float]:
    """``"0, 0.25, 0.5"`` → floats in 0..1 (commas or spaces; at least 1, at most ``limit``)."""
    parts = [p for p in str(text).replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(input_name, "numbers in 0..1 separated by commas", repr(text)) from None
    if not values or len(values) > limit or any(not math.isfinite(v) or v < 0 or v > 1 for v in values):
        raise InputError(input_name, f"1 to {limit} numbers in 0..1", repr(text))
    return values


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow: fixed-size bitmap font
        return ImageFont.load_default()


def label(image: torch.Tensor, text: str, where: tuple[int, int] | None = None) -> torch.Tensor:
    """Draw ``text`` in white on a dark box (top-left, or centred on ``where`` = (x, y)) of one ``(H,W,3)`` image."""
    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(arr)
    draw = ImageDraw.Draw(pil)
    size = max(10, min(pil.size) // 16)
    while True:   # shrink until the text fits the picture's width (small previews), down to 6 px
        font = _font(size)
        box = draw.textbbox((0, 0), text, font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        pad = max(2, size // 5)
        if w + 2 * pad <= pil.size[0] or size <= 6:
            break
        size -= 1
    if where is None:
        x, y = pad, pad
    else:
        x = min(max(int(where[0] - w / 2), pad), pil.size[0] - w - pad)
        y = min(max(int(where[1] - h / 2), pad), pil.size[1] - h - pad)
    draw.rectangle((x - pad, y - pad, x + w + pad, y + h + pad), fill=(0, 0, 0))
    draw.text((x - box[0], y - box[1]), text, fill=(255, 255, 255), font=font)
    return torch.from_numpy(np.asarray(pil).astype(np.float32) / 255.0)


def grid(images: torch.Tensor, labels: list[str], columns: int = 0, gap: int = 4) -> torch.Tensor:
    """Labelled panels in rows of ``columns`` (0: about square) → ``(1,H',W',3)``."""
    k, h, w, _ = images.shape
    cols = columns if columns > 0 else math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    panels = [label(images[i], labels[i]) for i in range(k)]
    panels += [torch.ones(h, w, 3)] * (rows * cols - k)
    padded = torch.stack([torch.nn.functional.pad(p, (0, 0, 0, gap, 0, gap), value=1.0) for p in panels])
    out = rearrange(padded, "(r c) h w ch -> (r h) (c w) ch", r=rows, c=cols)
    return out[: rows * (h + gap) - gap, : cols * (w + gap) - gap].unsqueeze(0).contiguous()


def fan(images: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """The Strength Fan: one picture whose angular sectors (around the bottom centre, left to right)
    come from successive panels, so the strengths read as a continuous sweep → ``(1,H,W,3)``."""
    k, h, w, _ = images.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    theta = torch.atan2(h - yy, xx - w / 2)                      # pi at the left edge, 0 at the right
    sector = ((math.pi - theta) / math.pi * k).floor().clamp(0, k - 1).long()
    out = torch.gather(images, 0, sector.view(1, h, w, 1).expand(1, h, w, 3)).squeeze(0)
    edges = (sector[:, 1:] != sector[:, :-1])
    out[:, 1:][edges] = 1.0
    radius = 0.8 * min(h, w / 2)
    for i, text in enumerate(labels):
        angle = math.pi - (i + 0.5) * math.pi / k
        out = label(out, text, (w / 2 + radius * math.cos(angle), h - radius * math.sin(angle)))
    return out.unsqueeze(0).contiguous()


def step_colours(start: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Colour ``(h,w)`` start steps: first step yellow → last step purple, never black → ``(h,w,3)``."""
    ramp = torch.tensor(RAMP)
    t = (start / max(n_steps - 1, 1)).clamp(0, 1) * (len(RAMP) - 1)
    lo = t.floor().long().clamp(max=len(RAMP) - 2)
    frac = (t - lo).unsqueeze(-1)
    colour = ramp[lo] * (1 - frac) + ramp[lo + 1] * frac
    never = ~torch.isfinite(start)
    return torch.where(never.unsqueeze(-1), torch.tensor(NEVER_COLOUR), torch.nan_to_num(colour, nan=0.0))


def schedule_text_size(panel_width: int) -> int:
    """Font size of the schedule picture's header and legend: readable once the node shrinks the picture."""
    return max(10, panel_width // 14)


def _text_strip(width: int, height: int, items: list[tuple[float, str, str]], font) -> np.ndarray:
    """A dark strip ``(height, width, 3)`` uint8 with texts placed at fractions of the width: ``(where, anchor, text)``,
    anchor ``l``/``m``/``r``."""
    pil = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(pil)
    for where, anchor, text in items:
        box = draw.textbbox((0, 0), text, font=font)
        w, h = box[2] - box[0], box[3] - box[1]
        x = {"l": where * width, "m": where * width - w / 2, "r": where * width - w}[anchor]
        x = min(max(int(x), 2), max(width - w - 2, 2))
        draw.text((x - box[0], (height - h) // 2 - box[1]), text, fill=(240, 240, 240), font=font)
    return np.asarray(pil)


def _fit_font(text_items: list[str], width: int, size: int):
    """The largest font up to ``size`` (down to 6) in which the texts, side by side, fit ``width``."""
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    while True:
        font = _font(size)
        total = sum(probe.textbbox((0, 0), t, font=font)[2] for t in text_items) + 8 * len(text_items)
        if total <= width or size <= 6:
            return font, size
        size -= 1


#: the schedule picture's panels are at most this many pixels on their longer side (cells get fewer pixels, down
#: to 1; a latent grid longer than this is shown shrunk, one pixel per sampled cell)
PREVIEW_MAX_SIDE = 2048
#: the Schedule Preview's pictures together hold at most this many pixels (about 400 MB as an IMAGE); a larger
#: batch of maps is previewed for its first maps only (:func:`schedule_images_fitting`)
PREVIEW_MAX_PIXELS = 2 ** 25


def schedule_cell(h: int, w: int, scale: int = 8, min_panel: int = 256) -> int:
    """Pixels per latent cell of a schedule picture for an ``h x w`` latent grid: ``scale``, more for narrow grids
    (a panel at least ``min_panel`` px wide), but never so many that a panel's longer side passes
    :data:`PREVIEW_MAX_SIDE` (at least 1; 0 when even 1 px per cell is too many: the grid is then shrunk)."""
    h, w = max(int(h), 1), max(int(w), 1)
    wanted = max(int(scale), -(-int(min_panel) // w))
    if max(h, w) > PREVIEW_MAX_SIDE:
        return 0
    return min(wanted, PREVIEW_MAX_SIDE // max(h, w))


def _panel_size(h: int, w: int, scale: int, min_panel: int) -> tuple[int, int, int]:
    """``(height, width, canvas width)`` in pixels of one panel's cells and of the column they sit in."""
    cell = schedule_cell(h, w, scale, min_panel)
    if cell == 0:
        f = PREVIEW_MAX_SIDE / max(h, w)
        ph, pw = max(1, round(h * f)), max(1, round(w * f))
    else:
        ph, pw = h * cell, w * cell
    return ph, pw, max(pw, int(min_panel))


def _strip_height(panel_width: int) -> int:
    """Height of the header's and the legend's text strips over a panel ``panel_width`` px wide."""
    return int(schedule_text_size(panel_width) * 1.7) + 2


def schedule_image_size(h: int, w: int, scale: int = 8, min_panel: int = 256) -> tuple[int, int]:
    """:func:`schedule_image`'s ``(height, width)`` for an ``h x w`` latent grid, without drawing it."""
    ph, _, canvas = _panel_size(h, w, scale, min_panel)
    strip = _strip_height(canvas)
    cell = schedule_cell(h, w, scale, min_panel)
    return ph + 2 * strip + max(6, strip // 2), 2 * canvas + max(4, cell // 2)


def schedule_images_fitting(count: int, h: int, w: int, scale: int = 8, min_panel: int = 256) -> int:
    """How many of ``count`` schedule pictures of an ``h x w`` grid fit :data:`PREVIEW_MAX_PIXELS` (at least 1)."""
    height, width = schedule_image_size(h, w, scale, min_panel)
    return max(1, min(int(count), PREVIEW_MAX_PIXELS // max(height * width, 1)))


def _cells(panel: torch.Tensor, cell: int, ph: int, pw: int) -> np.ndarray:
    """``(h,w,3)`` colours as a ``(ph,pw,3)`` 8-bit picture: ``cell`` px squares whose top row and left column are a
    grid line (blended towards grey; twice where the lines cross), or shrunk (``cell`` 0). The colours are put in
    8 bits per cell, then repeated, so the big picture is only ever made in bytes."""
    def u8(t: torch.Tensor) -> torch.Tensor:
        return (t * 255 + 0.5).to(torch.uint8)

    if cell == 0:   # more cells than pixels: the cell under each pixel's centre
        rows = ((torch.arange(ph) + 0.5) * panel.shape[0] / ph).long().clamp(max=panel.shape[0] - 1)
        cols = ((torch.arange(pw) + 0.5) * panel.shape[1] / pw).long().clamp(max=panel.shape[1] - 1)
        return u8(panel[rows][:, cols]).numpy()
    big = u8(panel).repeat_interleave(cell, 0).repeat_interleave(cell, 1)
    if cell >= 4:
        line = panel * 0.6 + 0.4 * 0.5
        big[::cell, :, :] = u8(line).repeat_interleave(cell, 1)
        down = u8(line).repeat_interleave(cell, 0)
        down[::cell] = u8(line * 0.6 + 0.4 * 0.5)
        big[:, ::cell, :] = down
    return big.numpy()


def schedule_image(start: torch.Tensor, effective: torch.Tensor, n_steps: int, scale: int = 8,
                   min_panel: int = 256, check: Callable[[], None] | None = None) -> torch.Tensor:
    """Two panels at latent resolution (each latent cell ``scale`` px, with a grid): the start step
    of every cell and its effective strength (free steps / N), under a header naming them and over a
    legend of their colours (start steps first to last, black = never; strength 0 to 1) →
    ``(1, header + H + legend, 2W + gap, 3)``. Small grids get larger cells, so a panel is at least
    ``min_panel`` px wide and its text stays readable; the cells of a panel take at most
    :data:`PREVIEW_MAX_SIDE` px on its longer side (:func:`schedule_cell`; a narrower panel is padded white to
    ``min_panel``), so the picture is :func:`schedule_image_size` whatever the grid and the texts. ``check`` is
    called between the stages of drawing (ComfyUI's interrupt check, from the node)."""
    check = check or (lambda: None)
    h, w = int(start.shape[-2]), int(start.shape[-1])
    cell = schedule_cell(h, w, scale, min_panel)
    ph, cells_w, pw = _panel_size(h, w, scale, min_panel)
    left = step_colours(start, n_steps)
    right = effective.clamp(0, 1).unsqueeze(-1).expand(*effective.shape, 3)
    panels = []
    for panel in (left, right):
        check()
        big = _cells(panel, cell, ph, cells_w)
        if pw > cells_w:   # a tall, narrow grid: room for the header and legend beside its cells
            big = np.concatenate([big, np.full((ph, pw - cells_w, 3), 255, np.uint8)], axis=1)
        panels.append(big)
    gap_w = max(4, cell // 2)
    firsts = start[torch.isfinite(start)]
    first = int(firsts.min()) if firsts.numel() else None
    head_left = f"start step of {n_steps}" + (f", first {first}" if first is not None else ", none changes")
    head_right = f"strength, mean {float(effective.mean()):.2f}"
    font, size = _fit_font([head_left], pw, schedule_text_size(pw))
    font_r, size_r = _fit_font([head_right], pw, size)
    strip = _strip_height(pw)   # the same for every picture of a batch, whatever font size its texts fit in
    header = [_text_strip(pw, strip, [(0.0, "l", head_left)], font), _text_strip(pw, strip, [(0.0, "l", head_right)], font_r)]

    # legends: a colour bar (the ramp from the first step to the last, then a black "never" swatch) and a grey bar
    bar = max(6, strip // 2)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    never_w = max(probe.textbbox((0, 0), "never", font=font)[2] + 10, pw // 6)
    steps_axis = torch.linspace(0, max(n_steps - 1, 0), pw - never_w)
    ramp = step_colours(steps_axis.unsqueeze(0), n_steps)[0]
    ramp = torch.cat([ramp, torch.tensor(NEVER_COLOUR).expand(never_w, 3)])
    grey = torch.linspace(0, 1, pw).unsqueeze(-1).expand(pw, 3)
    last = f"{max(n_steps - 1, 0)}"
    legends = []
    for colours, texts, f in ((ramp, [(0.0, "l", "step 0"), ((pw - never_w - 6) / pw, "r", last),
                                      ((pw - never_w / 2) / pw, "m", "never")], font),
                              (grey, [(0.0, "l", "0 (kept)"), (1.0, "r", "1 (full)")], font)):
        bar_px = (colours.unsqueeze(0).expand(bar, pw, 3).numpy() * 255 + 0.5).astype(np.uint8)
        legends.append(np.concatenate([bar_px, _text_strip(pw, strip, texts, f)]))
    check()
    columns = []
    for head, panel, legend in zip(header, panels, legends):
        columns.append(np.concatenate([head, panel, legend]))
    gap = np.full((columns[0].shape[0], gap_w, 3), 255, np.uint8)
    check()
    out = torch.from_numpy(np.concatenate([columns[0], gap, columns[1]], axis=1)).to(torch.float32).div_(255.0)
    return out.unsqueeze(0)


def heat_preview(heat: torch.Tensor, mask: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE ``(B,H,W,3)``: the heat in red over the picture (grey without one), the mask outline white."""
    if base is None:
        base = torch.full((*heat.shape, 3), 0.5)
    alpha = (0.65 * heat).unsqueeze(-1)
    colour = torch.tensor([1.0, 0.15, 0.05]).view(1, 1, 1, 3)
    out = base[..., :3] * (1.0 - alpha) + colour * alpha
    edge = (mask - grow(mask, -1)).clamp(0, 1).unsqueeze(-1)
    return torch.where(edge > 0, torch.ones_like(out), out).clamp(0, 1).contiguous()


#: one colour per edit concept in the several-edits preview (red, blue, green, orange, violet, cyan, then again)
CONCEPT_COLOURS = ((1.0, 0.15, 0.05), (0.1, 0.45, 1.0), (0.1, 0.85, 0.2), (1.0, 0.6, 0.0), (0.75, 0.2, 1.0),
                   (0.0, 0.85, 0.85))


def concepts_preview(regions: torch.Tensor, heats: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """IMAGE ``(B,H,W,3)``: each concept's region ``(k,B,H,W)`` tinted in its colour by its heat over the picture
    (grey without one), every region outlined white."""
    if base is None:
        base = torch.full((*regions.shape[1:], 3), 0.5)
    out = base[..., :3].clone()
    for i in range(regions.shape[0]):
        alpha = (0.25 + 0.5 * heats[i]).mul(regions[i]).unsqueeze(-1)
        colour = torch.tensor(CONCEPT_COLOURS[i % len(CONCEPT_COLOURS)]).view(1, 1, 1, 3)
        out = out * (1.0 - alpha) + colour * alpha
        edge = (regions[i] - grow(regions[i], -1)).clamp(0, 1).unsqueeze(-1)
        out = torch.where(edge > 0, torch.ones_like(out), out)
    return out.clamp(0, 1).contiguous()
