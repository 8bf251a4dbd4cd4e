"""Where a node's name enters: the menu categories (one table), search words, and input errors named at the node boundary.

The core raises :class:`~.core.errors.InputError` about an input; :func:`names_errors` wraps a node's
``execute`` so the error the user sees names the node too ("Differential KSampler: input 'change_map'
expected …"). Node ids are written literally in each schema (``node_id="DDE_…"``).
"""

from __future__ import annotations

import dataclasses
import functools

from comfy_api.latest import io

from .core.errors import InputError

#: the menu: the pack's root and one submenu per feature; every node's ``category`` is one of ``CATEGORIES``
CATEGORY = "differential edit"
SAMPLING = CATEGORY + "/sampling"      # the Differential KSamplers and the MODEL patch
DIFFEDIT = CATEGORY + "/diffedit"      # DiffEdit masks, inversion and the several-edits estimation
MAPS = CATEGORY + "/maps"              # change-map constructors and operations, the map of a before/after pair
METRICS = CATEGORY + "/metrics"        # adherence metrics
VISUALISE = CATEGORY + "/visualise"    # grids, fans, schedule pictures, heat previews
IMAGE = CATEGORY + "/image"            # pixel-space compositing
CATEGORIES = (SAMPLING, DIFFEDIT, MAPS, METRICS, VISUALISE, IMAGE)


def search_aliases(*words: str) -> dict:
    """``io.Schema`` keywords giving a node the extra words users search for (``search_aliases``), where the running
    ComfyUI's Schema has that field (0.3x); nothing where it has not (v0.8.0): ``io.Schema(..., **search_aliases(…))``."""
    if not words or "search_aliases" not in {f.name for f in dataclasses.fields(io.Schema)}:
        return {}
    return {"search_aliases": list(words)}


def names_errors(execute):
    """Decorate a V3 node's ``execute`` (under ``@classmethod``): input errors get the node's display name."""

    @functools.wraps(execute)
    def run(cls, *args, **kwargs):
        try:
            return execute(cls, *args, **kwargs)
        except InputError as error:
            if error.node:
                raise
            raise error.at(display_name(cls)) from None

    return run


def display_name(cls) -> str:
    """A node's display name from its schema. (Not ``GET_SCHEMA()``: ComfyUI runs ``execute`` on a locked copy
    of the class, where ``GET_SCHEMA`` cannot store the schema it builds.)"""
    return cls.define_schema().display_name
