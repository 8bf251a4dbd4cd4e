"""Messages shown on a node when a run "succeeds" in a way the picture does not explain.

Each helper returns message lines (empty when all is well) and logs each one as a warning naming
the node and the input; ``overlays.messages_ui`` puts them in the node's UI output, where
``js/differential_edit.js`` shows them on the node. Nodes that can warn always send their list
(empty too), so a message disappears once the cause is fixed.
"""

from __future__ import annotations

import logging

import torch

from .core import facts, visual
from .core.schedule import free_steps

LOG = logging.getLogger("differential_edit")


def _log(node: str, lines: list[str]) -> list[str]:
    for line in lines:
        LOG.warning("%s: %s", node, line)
    return lines


MAP_ADVICE = "Make the map at the picture's size (e.g. connect the picture to the map node's reference)."


def stretch(node: str, input_name: str, maps: torch.Tensor, latent_shape, what: str = "the map",
            fitted: str = "it is stretched to fit", advice: str = MAP_ADVICE) -> list[str]:
    """A map (or picture: ``what``, ``fitted``, ``advice``) whose aspect ratio is not the latent's is stretched: say so."""
    found = facts.aspect_mismatch(maps, tuple(latent_shape)[-2:])
    if found is None:
        return []
    (mh, mw), (lh, lw) = found.map_size, found.latent_size
    return _log(node, [f"{input_name}: {what} is {mw} x {mh} px but the latent is {lw} x {lh} cells, another aspect "
                       f"ratio: {fitted} ({found.cells:.0f} cells off). {advice}"])


def coverage(node: str, input_name: str, mask: torch.Tensor, identical: bool = False) -> list[str]:
    """An empty or full mask (and, for DiffEdit Mask, predictions that never differ)."""
    lines = []
    if identical:
        lines.append(f"{input_name}: the query and the reference give the same prediction everywhere (the same "
                     f"prompt?): there is no difference to find.")
    found = facts.mask_coverage(mask)
    if found is not None:
        which = (lambda ids: "" if found.batch == 1 else f" (image {', '.join(str(i + 1) for i in ids)} of {found.batch})")
        if found.empty:
            lines.append(f"{input_name}: the mask is empty{which(found.empty)}: nothing is selected, an edit with it "
                         f"returns the picture unchanged.")
        if found.full:
            lines.append(f"{input_name}: the mask covers the whole picture{which(found.full)}: an edit with it changes "
                         f"everything.")
    return _log(node, lines)


def preview_cut(node: str, shown: int, total: int) -> list[str]:
    """The Schedule Preview drew the pictures of the first ``shown`` of ``total`` maps only (its size cap)."""
    if shown >= total:
        return []
    return _log(node, [f"preview: the pictures show the first {shown} of {total} maps (all the pictures together "
                       f"hold at most {visual.PREVIEW_MAX_PIXELS:,} pixels); effective_strength and start_step hold "
                       f"every map."])


def same_conditioning(a, b) -> bool:
    """Whether two CONDITIONING lists carry the same tensors (the same prompt encoded twice)."""
    if a is None or b is None or len(a) != len(b):
        return False
    for (ta, ea), (tb, eb) in zip(a, b):
        if not (isinstance(ta, torch.Tensor) and isinstance(tb, torch.Tensor)) or ta.shape != tb.shape:
            return False
        if not torch.equal(ta, tb):
            return False
        pa, pb = ea.get("pooled_output"), eb.get("pooled_output")
        if isinstance(pa, torch.Tensor) != isinstance(pb, torch.Tensor):
            return False
        if isinstance(pa, torch.Tensor) and (pa.shape != pb.shape or not torch.equal(pa, pb)):
            return False
    return True


def levels_of(run) -> facts.Levels:
    """How many strengths a planned run (``plan.Plan.run``) renders."""
    return facts.render_levels(run.strength_map, free_steps(run.start, run.n_steps), run.n_steps)


def levels_line(found: facts.Levels) -> str:
    steps = f"{found.n_steps} step renders" if found.n_steps == 1 else f"{found.n_steps} steps render"
    return (f"{steps} at most {found.possible} distinct strengths; this map gets "
            f"{found.rendered}.")


def collapse(node: str, found: facts.Levels) -> list[str]:
    if not found.collapsed or found.n_steps < 1:   # no step at all (denoise 0): nothing changes, nothing to say
        return []
    return _log(node, [f"steps: {levels_line(found)} {found.to_keep + found.to_full} of the map's {found.grey} grey "
                       f"latent cells become 0 (kept: {found.to_keep}) or 1 (changed fully: {found.to_full}). "
                       f"Use more steps for graded change."])


def sampler_levels(node: str, change_map, planned) -> list[str]:
    """For the sampler nodes: warn when the planned schedule turns the map's greys into 0 or 1 (``planned``: the
    change map's ``plan.Plan`` for the run; maps without grey values cost nothing here)."""
    if not facts.has_grey(change_map.maps) or len(planned.key.latent_shape) != 4:
        return []
    return collapse(node, levels_of(planned.run))


RESTYLE_SHARE = 0.5


def registration(node: str, found, align: str) -> list[str]:
    """Change Map from Edit: a mask over half the picture (a global restyle no shift or zoom explains) said in
    words, never a silent white map."""
    lines = []
    for i in range(found.mask.shape[0]):
        share = float(found.mask[i].mean())
        if share <= RESTYLE_SHARE:
            continue
        which = "" if found.mask.shape[0] == 1 else f" (image {i + 1})"
        if align == "off":
            why = "with align off; if the editor shifted or zoomed the picture, set align to similarity"
        else:
            why = (f"even after aligning ({found.transforms[i].text()}): no shift or zoom explains it, the editor "
                   f"restyled the whole picture")
        lines.append(f"after: {100 * share:.0f} % of the picture changed{which} {why}. The map is not one local "
                     f"edit's region: paint a mask, or raise noise_floor / full_change.")
    return _log(node, lines)
