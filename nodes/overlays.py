"""UI payloads for the frontend extension (``js/``): maps shown over pictures inside the node.

Nodes return ``io.NodeOutput(..., ui=overlay_ui(...))``. The payload key ``dde_overlay`` is read
by ``js/differential_edit.js`` in ``onExecuted``; each entry names PNG files saved in ComfyUI's
temp folder (served by ``/view``), never raw data or HTML:

    {"dde_overlay": [{"map": {"filename", "subfolder", "type"}, "base": {...} | None,
                      "label": str, "kind": "map" | "mask" | "heat" | "grid" | "schedule"}]}

and ``dde_messages``: a list of plain-text lines shown on the node as warnings (``nodes/messages.py``).
"""

from __future__ import annotations

import os
import uuid

import numpy as np
import torch
from PIL import Image

import folder_paths

OVERLAY_KEY = "dde_overlay"
MESSAGES = "dde_messages"
MAX_PREVIEWS = 8


def _save(array: np.ndarray) -> dict:
    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    name = f"dde_{uuid.uuid4().hex[:16]}.png"
    Image.fromarray(array).save(os.path.join(folder, name), compress_level=1)
    return {"filename": name, "subfolder": "", "type": "temp"}


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """A map ``(H,W)`` or a picture ``(H,W,C)`` as 8-bit for PNG: one channel (grey) becomes ``(H,W)``."""
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return (x.detach().float().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def overlay_ui(maps: torch.Tensor, base: torch.Tensor | None = None, label: str = "", kind: str = "map") -> dict:
    """Save up to 8 maps ``(B,H,W)`` (and matching pictures ``(B,H,W,C)``, grey, RGB or RGBA) for the node overlay."""
    entries = []
    for i in range(min(int(maps.shape[0]), MAX_PREVIEWS)):
        entry = {"map": _save(_to_uint8(maps[i])), "base": None, "label": label, "kind": kind}
        if base is not None:
            entry["base"] = _save(_to_uint8(base[min(i, base.shape[0] - 1), ..., :3]))
        entries.append(entry)
    return {OVERLAY_KEY: entries}


def picture_for(maps: torch.Tensor, picture) -> torch.Tensor | None:
    """``picture`` when it is an IMAGE ``(B,H,W,C)`` of the maps' size (the map is then shown over it), else None."""
    if not isinstance(picture, torch.Tensor) or picture.ndim != 4 or picture.shape[-1] not in (1, 3, 4):
        return None
    return picture if tuple(picture.shape[1:3]) == tuple(maps.shape[1:3]) else None


def images_ui(images: torch.Tensor, label: str = "", kind: str = "grid") -> dict:
    """Save up to 8 pictures ``(B,H,W,3)`` for the node (fan grids, schedule previews)."""
    entries = [{"map": _save(_to_uint8(images[i, ..., :3])), "base": None, "label": label, "kind": kind}
               for i in range(min(int(images.shape[0]), MAX_PREVIEWS))]
    return {OVERLAY_KEY: entries}


def messages_ui(messages: list[str], ui: dict | None = None) -> dict:
    """``ui`` (or a new UI dict) with the node's message lines; an empty list clears the node's messages."""
    out = dict(ui or {})
    out[MESSAGES] = [str(m) for m in messages]
    return out
