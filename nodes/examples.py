"""The example workflows' pictures, available to ComfyUI from the start.

The workflows in ``workflows/`` load ``example_scene.png``, ``example_depth.png`` and
``example_mask.png`` with *Load Image*. When ComfyUI loads the pack, every picture of
``workflows/inputs/`` that ComfyUI's input folder does not have yet is copied there, so a
workflow dropped onto the canvas runs on its first Run.

* A copy is written to a temporary file in the input folder and then linked (or renamed) to its
  name, so a copy that fails half-way (disk full) never leaves a partial picture under that name.
* A file of the same name already there is the user's and is never replaced, with one exception: a
  regular file whose bytes are a strict beginning of ours (what a copy cut short by an older version
  left) is repaired. A symlink of that name is never followed and never replaced.
* Each picture is copied on its own: one that fails (logged as a warning) does not stop the others;
  a read-only input folder only logs a warning.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid

LOG = logging.getLogger("differential_edit")
INPUTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflows", "inputs")


def example_inputs() -> list[str]:
    """The picture files the example workflows load (names in ``workflows/inputs``)."""
    return sorted(n for n in os.listdir(INPUTS) if n.lower().endswith(".png")) if os.path.isdir(INPUTS) else []


def _truncated_copy(target: str, ours: bytes) -> bool:
    """Whether ``target`` is a regular file (not a symlink) holding a strict beginning of ``ours``."""
    info = os.lstat(target)
    if not stat.S_ISREG(info.st_mode) or info.st_size >= len(ours):
        return False
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return f.read(len(ours)) == ours[:info.st_size]


def _write_new(folder: str, name: str, data: bytes) -> str:
    """``data`` in a new temporary file of ``folder`` (flushed to disk; the permissions a new file gets); returns its
    path."""
    path = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return path


def _install(folder: str, name: str, data: bytes) -> str | None:
    """Copy one picture; returns ``"copied"``, ``"repaired"`` or None (left alone)."""
    target = os.path.join(folder, name)
    repair = False
    if os.path.lexists(target):
        if not _truncated_copy(target, data):
            return None            # the user's file, a complete copy, a symlink, a folder: left as it is
        repair = True
    temp = _write_new(folder, name, data)
    try:
        if repair:
            if not _truncated_copy(target, data):   # changed meanwhile: it is not ours to replace any more
                return None
            os.replace(temp, target)                  # atomic; a symlink put there meanwhile is replaced, not followed
        else:
            try:
                os.link(temp, target)                 # fails if the name appeared meanwhile: never overwrites
            except FileExistsError:
                return None
            except OSError:                           # a file system without hard links
                if os.path.lexists(target):
                    return None
                os.rename(temp, target)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return "repaired" if repair else "copied"


def install_example_inputs(input_dir: str | None = None) -> list[str]:
    """Copy the example pictures that ``input_dir`` (ComfyUI's input folder) lacks, and repair truncated copies of
    them; returns the names written."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    written, failed = [], []
    for name in example_inputs():
        try:
            with open(os.path.join(INPUTS, name), "rb") as src:
                data = src.read()
            os.makedirs(input_dir, exist_ok=True)
            done = _install(input_dir, name, data)
        except OSError as e:
            failed.append(f"{name} ({e})")
            continue
        if done:
            written.append(name)
            if done == "repaired":
                LOG.warning("Differential Edit: %s in %s was a truncated copy of the example picture: repaired",
                            name, input_dir)
    if failed:
        LOG.warning("Differential Edit: could not copy the example pictures %s into %s; the example workflows need "
                    "them: copy workflows/inputs/*.png there by hand", ", ".join(failed), input_dir)
    if written:
        LOG.info("Differential Edit: copied the example workflows' pictures into %s: %s", input_dir, ", ".join(written))
    return written
