"""Region-locked instruction edit on real ComfyUI sampling: an instruction editor's conditioning (the picture as
reference latent) + a change map -> Differential KSampler.

The change map is the editor's own DiffEdit heat (DiffEdit Mask, query = the instruction, reference = the empty
instruction -- ConditioningZeroOut of it, which keeps the reference latent, as Kontext graphs make their negative)
or a painted mask with a soft edge. Promises, by value: bit-exact where the map gives no free step, the editor's
own (plain KSampler) result where the map is 1, a seam between that changes by degrees, monotone in the map.

On the tiny random-weight FLUX Kontext and Qwen-Image-Edit (``dde_world.editors``), and on the analytic editor,
whose posterior is local per pixel: there the map-1 region is the editor's result bit for bit, the changed object
takes the instruction's colour and everything else -- including a second object the instruction would also have
recoloured -- stays exact.
"""

from __future__ import annotations

import pytest
import torch

from dde_world import editors as E
from dde_world import families as F

NAMES = ("flux_kontext", "qwen_image_edit")
STEPS = 4


@pytest.fixture(scope="module")
def editor(comfy):
    cache = {}

    def get(name):
        why = F.unavailable(E.EDITORS[name])
        if why:
            pytest.skip(why)
        if name not in cache:
            ed = E.tiny_editor(name)
            empty = F._node("ConditioningZeroOut", conditioning=ed.positive)[0]
            cache[name] = ed, empty
        return cache[name]

    return get


def _cells(cmap, ratio):
    """The map as the sampler sees it: area-averaged onto the latent grid ``(h, w)``."""
    return torch.nn.functional.avg_pool2d(cmap[None], ratio)[0, 0]


def _dks(comfy, model, positive, negative, latent, cmap, steps, cfg):
    return comfy.run_node("DDE_DifferentialKSampler", model=model, seed=3, steps=steps, cfg=cfg, sampler_name="euler",
                          scheduler="normal", positive=positive, negative=negative,
                          latent_image={"samples": latent}, change_map=cmap, mode="step")[0]["samples"]


def _plain(model, positive, negative, latent, steps, cfg):
    import nodes

    return nodes.common_ksampler(model, 3, steps, cfg, "euler", "normal", positive, negative,
                                 {"samples": latent})[0]["samples"]


def _painted(ed):
    """A painted mask with a soft brush edge: 0 on the left, 1 on the right, a ramp between (the 8 latent columns:
    0, 0, 0, 0.125, 0.5, 0.875, 1, 1), at the picture's size."""
    h, w = ed.latent.shape[-2:]
    x = (torch.arange(w, dtype=torch.float32) - w / 3) / (w / 3)
    cells = x.clamp(0, 1).expand(h, w)
    cells = torch.where(cells > 0, (cells * 8).round() / 8, cells)
    return cells.repeat_interleave(ed.ratio, 0).repeat_interleave(ed.ratio, 1)[None].contiguous()


def _per_cell(latent):
    """(h, w) of a latent's cells (the frame axis of a video-shaped latent dropped)."""
    return latent[0] if latent.ndim == 4 else latent[0, :, 0]


@pytest.mark.parametrize("name", NAMES)
def test_the_empty_instruction_keeps_the_reference_latent(editor, name):
    """ConditioningZeroOut of the instruction: its text zeroed, the picture still on it as reference latent."""
    ed, empty = editor(name)
    for cond, d in empty:
        assert [r is ed.reference for r in d["reference_latents"]] == [True]
        assert float(cond.abs().max()) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_locked_by_the_editors_own_diffedit_heat(comfy, editor, name):
    """The heat of DiffEdit Mask (query = the instruction, reference = the empty instruction, both with the
    picture as reference latent) as change map: every latent cell whose heat frees no step (heat * steps < 1 in
    step mode) is bit-exact, every cell it frees changes."""
    ed, empty = editor(name)
    heat, mask, _, _ = comfy.run_node("DDE_DiffEditMask", model=ed.model, query=ed.positive,
                                      latent={"samples": ed.latent}, reference=empty, n=2).args
    assert heat.shape == (1, ed.ratio * ed.latent.shape[-2], ed.ratio * ed.latent.shape[-1])
    out = _dks(comfy, ed.model, ed.positive, empty, ed.latent, heat, STEPS, 2.0)
    cells = _cells(heat, ed.ratio)
    kept, free = cells * STEPS < 0.99, cells * STEPS > 1.01
    assert kept.any() and free.any()
    src, got = _per_cell(ed.latent), _per_cell(out)
    assert torch.equal(got[:, kept], src[:, kept])
    assert (got[:, free] - src[:, free]).abs().amax(0).min() > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_locked_by_a_painted_mask_kept_exact_edited_inside_soft_seam(comfy, editor, name):
    """A painted mask with a soft edge: map 0 and 0.125 (no free step at 4 steps) bit-exact; map 1 the editor's own
    KSampler result (within 1e-3: the editor's attention also sees the kept cells, which the Differential KSampler
    holds on the source's noise path; a map of 1 everywhere is KSampler bit for bit); the seam (0.5, 0.875)
    changed by degrees: its mean change from the source strictly between 0 and the map-1 cells', increasing with
    the map."""
    ed, empty = editor(name)
    cmap = _painted(ed)
    cells = _cells(cmap, ed.ratio)
    out = _per_cell(_dks(comfy, ed.model, ed.positive, empty, ed.latent, cmap, STEPS, 2.0))
    plain = _per_cell(_plain(ed.model, ed.positive, empty, ed.latent, STEPS, 2.0))
    src = _per_cell(ed.latent)
    for value in (0.0, 0.125):
        assert torch.equal(out[:, cells == value], src[:, cells == value]), value
    inside = cells == 1.0
    assert inside.sum() >= 8
    assert (out[:, inside] - plain[:, inside]).abs().max() <= 1e-3
    assert (plain[:, inside] - src[:, inside]).abs().mean() > 1.0     # and the editor did change them
    change = [float((out[:, cells == v] - src[:, cells == v]).abs().mean()) for v in (0.125, 0.5, 0.875, 1.0)]
    assert change[0] == 0.0 < change[1] < change[2] < change[3], change
    everywhere = _dks(comfy, ed.model, ed.positive, empty, ed.latent, torch.ones_like(cmap), STEPS, 2.0)
    assert torch.equal(everywhere, _plain(ed.model, ed.positive, empty, ed.latent, STEPS, 2.0))


# -- the analytic editor: the truth is known ------------------------------------------------------------

ANALYTIC_STEPS = 12
SCENES = (100, 101, 103, 104)


def two_of_a_colour(seed):
    """An editor scene whose instruction would recolour two objects: a second object given the named colour.
    Returns (scene, source, the other object)."""
    s = E.editor_scene(seed)
    a, _ = s.instruction
    other = next(o for o in s.objects if not torch.equal(o, s.changed))
    source = s.source.clone()
    source[0, :3][:, other] = torch.tensor(E.PALETTE[a]).view(3, 1)
    return s, source, other


def brush(region, rim=(0.1, 0.2)):
    """A painted mask of ``region`` (bool latent cells) with a soft edge inward: the region's outer ring of cells
    ``rim[0]``, the next ring ``rim[1]``, its core 1; 0 outside. At the picture's size (8 px per cell)."""
    inside = region.float()[None, None]
    outside = 1 - inside
    ring1 = inside * torch.nn.functional.max_pool2d(outside, 3, 1, 1)
    ring2 = inside * torch.nn.functional.max_pool2d(outside, 5, 1, 2) - ring1
    cells = (inside - ring1 - ring2 + rim[0] * ring1 + rim[1] * ring2)[0, 0]
    return cells, cells.repeat_interleave(8, 0).repeat_interleave(8, 1)[None].contiguous()


@pytest.fixture(scope="module")
def analytic(comfy):
    """The analytic editor asking for one exact colour (one Gaussian: its posterior is local per pixel), as a
    rectified-flow MODEL."""
    return E.make_editor_model(E.AnalyticEditor(shade=1.0), "flow")


def _toward(out, source, a, b, where):
    """Per cell of ``where``: how far the RGB of ``out`` went from the source colour ``a`` toward ``b`` (0..1)."""
    direction = torch.tensor(E.PALETTE[b]) - torch.tensor(E.PALETTE[a])
    moved = (out[0, :3][:, where] - source[0, :3][:, where]).T @ direction
    return moved / direction.dot(direction)


@pytest.mark.parametrize("seed", SCENES)
def test_analytic_painted_lock_keeps_the_second_object_and_gives_the_editors_result_inside(comfy, analytic, seed):
    """The instruction names a colour two objects have; the plain editor recolours both (and redraws the rest a
    little: its sample deviates from the source by up to a few hundredths). Locked by a painted mask on one of
    them: outside the mask bit-exact (the other object keeps its colour), the mask's core the editor's own result
    bit for bit, the soft rim between: strictly between the source and the instruction's colour, increasing with
    the map (at 12 steps the rim's 0.1 frees the last step: a few hundredths of the way; 0.2 the last two: about
    0.93-0.96 of it -- a confident editor commits early)."""
    s, source, other = two_of_a_colour(seed)
    a, b = s.instruction
    pos, keep = E.editor_conditioning(s.instruction, source), E.editor_conditioning(None, source)
    plain = _plain(analytic, pos, keep, source, ANALYTIC_STEPS, 1.0)
    assert _toward(plain, source, a, b, other).min() > 0.95 and _toward(plain, source, a, b, s.changed).min() > 0.95
    background = ~(s.changed | other)
    assert (plain[0][:, background] - source[0][:, background]).abs().max() > 0.01
    cells, cmap = brush(s.changed)
    out = _dks(comfy, analytic, pos, keep, source, cmap, ANALYTIC_STEPS, 1.0)
    assert torch.equal(out[0][:, cells == 0], source[0][:, cells == 0])
    core = cells == 1
    assert core.sum() >= 4 and torch.equal(out[0][:, core], plain[0][:, core])
    t_outer, t_inner = (_toward(out, source, a, b, cells == v) for v in (0.1, 0.2))
    assert 0 < float(t_outer.min()) and float(t_outer.max()) < float(t_inner.min()) and float(t_inner.max()) < 1, (
        t_outer, t_inner)


@pytest.mark.parametrize("seed", SCENES)
def test_analytic_heat_lock_recolours_what_the_instruction_names_and_nothing_else(comfy, analytic, seed):
    """The editor's own DiffEdit heat as change map: the objects the instruction names take its colour (within
    0.06 of it per channel, the editor's own spread), every cell the heat frees no step of stays bit-exact, and
    that is the whole background and every object of another colour."""
    s, source, other = two_of_a_colour(seed)
    a, b = s.instruction
    pos, keep = E.editor_conditioning(s.instruction, source), E.editor_conditioning(None, source)
    heat = comfy.run_node("DDE_DiffEditMask", model=analytic, query=pos, latent={"samples": source},
                          reference=keep).args[0]
    out = _dks(comfy, analytic, pos, keep, source, heat, ANALYTIC_STEPS, 1.0)
    named = s.changed | other
    target = torch.tensor(E.PALETTE[b]).view(3, 1)
    assert (out[0, :3][:, named] - target).abs().max() <= 0.06
    cells = _cells(heat, 8)
    kept = cells * ANALYTIC_STEPS < 1
    assert torch.equal(out[0][:, kept], source[0][:, kept])
    grown = torch.nn.functional.max_pool2d(named.float()[None, None], 3, 1, 1)[0, 0] > 0
    assert bool(kept[~grown].all())     # nothing a cell away from the named objects is touched
