"""The example workflows' pictures, available to ComfyUI from the start.

The workflows in ``workflows/`` load ``example_scene.png``, ``example_depth.png`` and
``example_mask.png`` with *Load Image*. When ComfyUI loads the pack, every picture of
``workflows/inputs/`` that ComfyUI's input folder does not have yet is copied there, so a
workflow dropped onto the canvas runs on its first Run. A file of the same name already in the
input folder is never replaced (it is the user's); a read-only input folder only logs a warning.
"""

from __future__ import annotations

import logging
import os
import shutil

LOG = logging.getLogger("differential_edit")
INPUTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows", "inputs")


def example_inputs() -> list[str]:
    """The picture files the example workflows load (names in ``workflows/inputs``)."""
    return sorted(n for n in os.listdir(INPUTS) if n.lower().endswith(".png")) if os.path.isdir(INPUTS) else []


def install_example_inputs(input_dir: str | None = None) -> list[str]:
    """Copy the example pictures that ``input_dir`` (ComfyUI's input folder) lacks; returns the names copied."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    copied = []
    try:
        for name in example_inputs():
            target = os.path.join(input_dir, name)
            if os.path.lexists(target):
                continue
            os.makedirs(input_dir, exist_ok=True)
            with open(os.path.join(INPUTS, name), "rb") as src, open(target, "xb") as dst:   # "x": never overwrite
                shutil.copyfileobj(src, dst)
            copied.append(name)
    except OSError as e:
        LOG.warning("Differential Edit: could not copy the example pictures into %s (%s); the example workflows "
                    "need them: copy workflows/inputs/*.png there by hand", input_dir, e)
    if copied:
        LOG.info("Differential Edit: copied the example workflows' pictures into %s: %s", input_dir, ", ".join(copied))
    return copied
