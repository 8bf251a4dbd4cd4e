"""Instruction editors (the picture as reference latents on the conditioning) on real ComfyUI sampling.

Tiny random-weight FLUX Kontext (Flux + ReferenceLatent), Qwen-Image-Edit (Qwen-Image + reference latents) and Flux.2
(dev) with reference images, as
``dde_world.editors`` builds them: map 0 bit-exact in every mode, map 1 = ComfyUI's ``common_ksampler`` bit for bit,
the Advanced split = one pass, the reference latents reach the diffusion model untouched by the step mask at every
step, DiffEdit Edit exact outside its mask, Strength Fan and Schedule Preview run.

Then DiffEdit from the editor itself, on the analytic editor (an exact posterior conditioned on the source scene and
an instruction that recolours one object): DiffEdit Mask with query = the instruction and reference = the empty
instruction, both carrying the picture as reference latent, finds the object the instruction changes.
"""

from __future__ import annotations

import inspect
import os
import re

import pytest
import torch

from dde_world import editors as E
from dde_world import families as F
from dde_world.locate import PACK_ROOT
from dde_world.probes import iou

STEPS = 2
MODES = ("step", "denoise", "timestep")
NAMES = tuple(E.EDITORS)


@pytest.fixture(scope="module")
def editor(comfy):
    def get(name, reference="source"):
        why = F.unavailable(E.EDITORS[name])
        if why:
            pytest.skip(why)
        return E.tiny_editor(name, reference)

    return get


def _map(ed, value):
    h, w = ed.latent.shape[-2:]
    return torch.full((1, ed.ratio * h, ed.ratio * w), float(value))


def _half(ed):
    cmap = _map(ed, 0.0)
    cmap[..., cmap.shape[-1] // 2:] = 1.0
    return cmap


def dks(comfy, ed, cmap, mode="step", cfg=2.0, model=None, latent=None, steps=STEPS):
    return comfy.run_node("DDE_DifferentialKSampler", model=model or ed.model, seed=3, steps=steps, cfg=cfg,
                          sampler_name="euler", scheduler="normal", positive=ed.positive, negative=ed.negative,
                          latent_image=latent or {"samples": ed.latent}, change_map=cmap, mode=mode)[0]["samples"]


def ksampler(ed, cfg=2.0, latent=None, steps=STEPS):
    import nodes

    return nodes.common_ksampler(ed.model, 3, steps, cfg, "euler", "normal", ed.positive, ed.negative,
                                 latent or {"samples": ed.latent})[0]["samples"]


@pytest.mark.parametrize("reference", ["source", "other", "multi"])
def test_editors_carry_their_reference_latents_on_every_conditioning(comfy, editor, reference):
    """What ReferenceLatent / TextEncodeQwenImageEdit give: ``reference_latents`` = the pictures, in the order the
    nodes were chained, on every entry; a multi-reference graph also sets the method."""
    for name in NAMES:
        ed = editor(name, reference)
        for cond in (ed.positive, ed.negative):
            for _, d in cond:
                assert len(d["reference_latents"]) == len(ed.references)
                assert all(a is b for a, b in zip(d["reference_latents"], ed.references))
                assert ("reference_latents_method" in d) == (reference == "multi")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reference", ["source", "multi"])
def test_map_zero_is_bit_exact_in_every_mode(comfy, editor, name, reference):
    ed = editor(name, reference)
    for mode in MODES:
        for cfg in (1.0, 2.0):
            assert torch.equal(dks(comfy, ed, _map(ed, 0.0), mode, cfg), ed.latent), f"{name}: {mode}, cfg {cfg}"
    patched = comfy.run_node("DDE_ApplyChangeMap", model=ed.model, change_map=_map(ed, 0.0), mode="denoise")[0]
    import nodes

    out = nodes.common_ksampler(patched, 3, STEPS, 2.0, "euler", "normal", ed.positive, ed.negative,
                                {"samples": ed.latent})[0]["samples"]
    assert torch.equal(out, ed.latent), f"{name}: Apply Change Map (map 0) + KSampler"
    guider = comfy.run_node("CFGGuider", model=patched, positive=ed.positive, negative=ed.negative, cfg=2.0)[0]
    sigmas = comfy.run_node("BasicScheduler", model=patched, scheduler="normal", steps=STEPS, denoise=1.0)[0]
    noise = comfy.run_node("RandomNoise", noise_seed=3)[0]
    sampler = comfy.run_node("KSamplerSelect", sampler_name="euler")[0]
    out = comfy.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                         latent_image={"samples": ed.latent})[0]["samples"]
    assert torch.equal(out, ed.latent), f"{name}: Apply Change Map (map 0) + SamplerCustomAdvanced"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reference", ["source", "multi"])
def test_map_one_is_common_ksampler_bit_for_bit(comfy, editor, name, reference):
    ed = editor(name, reference)
    ref = ksampler(ed)
    assert not torch.equal(ref, ed.latent)
    for mode in MODES:
        out = dks(comfy, ed, _map(ed, 1.0), mode)
        assert torch.equal(out, ref), f"{name} ({mode}): map 1 differs from KSampler by {(out - ref).abs().max():.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_helps_decide_the_result(comfy, editor, name):
    """The reference latents are not ignored: another reference, another KSampler result; a second one, another
    again (so the tests here run an editor, not a text-to-image model with an unused key)."""
    results = [ksampler(editor(name, reference)) for reference in ("source", "other", "multi")]
    assert not torch.equal(results[0], results[1]) and not torch.equal(results[1], results[2])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["step", "denoise"])
def test_split_advanced_equals_one_pass(comfy, editor, name, mode):
    """Differential KSampler (Advanced) in two parts (leftover noise, then add_noise disable) = one pass; the kept
    half bit-exact in both."""
    ed = editor(name)
    common = dict(model=ed.model, noise_seed=3, steps=4, cfg=2.0, sampler_name="euler", scheduler="normal",
                  positive=ed.positive, negative=ed.negative, change_map=_half(ed), mode=mode)

    def adv(latent, add_noise, start, end, leftover):
        return comfy.run_node("DDE_DifferentialKSamplerAdvanced", add_noise=add_noise, latent_image=latent,
                              start_at_step=start, end_at_step=end, return_with_leftover_noise=leftover, **common)[0]

    one = adv({"samples": ed.latent}, "enable", 0, 10000, "disable")["samples"]
    first = adv({"samples": ed.latent}, "enable", 0, 2, "enable")
    two = adv(first, "disable", 2, 10000, "disable")["samples"]
    w = ed.latent.shape[-1] // 2
    assert torch.equal(two[..., :w], ed.latent[..., :w]) and torch.equal(one[..., :w], ed.latent[..., :w])
    # within rounding, as on every model (the handoff through the leftover noise: 1.4e-6 measured here)
    assert (two - one).abs().max() <= 1e-5, f"{name}: split differs by {(two - one).abs().max():.3g}"
    assert not torch.equal(one[..., w:], ed.latent[..., w:])


def _recording(model):
    """A clone whose diffusion model records the reference latents and the input of every call."""
    import comfy.patcher_extension as pe

    rec = []
    m = model.clone()
    signature = inspect.signature(model.model.diffusion_model._forward)

    def wrapper(executor, x, timesteps, *args, **kwargs):
        bound = signature.bind(x, timesteps, *args, **kwargs).arguments
        refs = bound.get("ref_latents")
        rec.append((x.detach().clone(), None if refs is None else [r.detach().clone() for r in refs]))
        return executor(x, timesteps, *args, **kwargs)

    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_record_refs", wrapper)
    return m, rec


def _assert_untouched(ed, refs, rows, where):
    assert refs is not None and len(refs) == len(ed.references), f"{where}: reference latents missing"
    for k, (got, ref) in enumerate(zip(refs, ed.references)):
        expected = ed.model.model.process_latent_in(ref)
        assert got.shape == (rows, *expected.shape[1:]), f"{where}: reference {k} of shape {tuple(got.shape)}"
        for row in got:
            assert torch.equal(row, expected[0]), f"{where}: reference {k} changed by {(row - expected[0]).abs().max():.3g}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reference", ["other", "multi"])
@pytest.mark.parametrize("mode,cfg", [("step", 2.0), ("denoise", 1.0), ("timestep", 2.0)])
def test_reference_latents_reach_the_model_untouched_by_the_step_mask(comfy, editor, name, reference, mode, cfg):
    """A half map (the left half kept for all steps, the right free): at every step the diffusion model gets each
    reference latent exactly as ComfyUI's model_base prepares it (``process_latent_in``), one copy per batch row, in
    order -- never thresholded by the step mask, never noised, never replaced by the picture being edited (the
    references here are another picture, of another size, and the picture itself) -- while the picture it denoises
    does carry the step's noise."""
    ed = editor(name, reference)
    model, rec = _recording(ed.model)
    dks(comfy, ed, _half(ed), mode, cfg, model=model, steps=4)
    assert len(rec) == 4
    for i, (x, refs) in enumerate(rec):
        assert x.shape[0] == (1 if cfg == 1.0 else 2)
        _assert_untouched(ed, refs, x.shape[0], f"{name} step {i}")
    assert not torch.equal(rec[0][0][:1], ed.model.model.process_latent_in(ed.latent))   # the input is noised


@pytest.mark.parametrize("name", NAMES)
def test_diffedit_mask_and_edit_with_reference_latents(comfy, editor, name):
    ed = editor(name)
    h, w = ed.latent.shape[-2:]
    model, rec = _recording(ed.model)
    heat, mask, shown, _ = comfy.run_node("DDE_DiffEditMask", model=model, query=ed.positive,
                                          latent={"samples": ed.latent}, n=2, reference=ed.negative)
    assert heat.shape == mask.shape == (1, ed.ratio * h, ed.ratio * w) and torch.isfinite(heat).all()
    assert float(heat.amax()) == 1.0 and set(torch.unique(mask).tolist()) == {0.0, 1.0}
    assert rec
    for i, (x, refs) in enumerate(rec):
        _assert_untouched(ed, refs, x.shape[0], f"{name} DiffEdit Mask call {i}")
    out = comfy.run_node("DDE_DiffEditEdit", model=ed.model, query=ed.positive, latent={"samples": ed.latent},
                         mask=_half(ed), steps=STEPS, encode_ratio=0.8, cfg=1.0, refine=0,
                         reference=ed.negative)[0]["samples"]
    assert out.shape == ed.latent.shape
    assert torch.equal(out[..., : w // 2], ed.latent[..., : w // 2])
    assert not torch.equal(out[..., w // 2:], ed.latent[..., w // 2:])


@pytest.mark.parametrize("name", NAMES)
def test_strength_fan_and_schedule_preview(comfy, editor, name):
    ed = editor(name)
    h, w = ed.latent.shape[-2:]
    t = ed.latent.shape[2] if ed.latent.ndim == 5 else 1
    _, effective, _ = comfy.run_node("DDE_SchedulePreview", model=ed.model, change_map=_half(ed), steps=STEPS,
                                     sampler_name="euler", scheduler="normal", latent_image={"samples": ed.latent})
    assert effective.shape == (t, h, w)
    assert torch.equal(effective[..., : w // 2], torch.zeros_like(effective[..., : w // 2]))
    assert torch.equal(effective[..., w // 2:], torch.ones_like(effective[..., w // 2:]))
    fan, panels, latents = comfy.run_node(
        "DDE_StrengthFan", model=ed.model, seed=3, steps=STEPS, sampler_name="euler", scheduler="normal", cfg=2.0,
        positive=ed.positive, negative=ed.negative, latent_image={"samples": ed.latent}, vae=F.vae(E.EDITORS[name]),
        strengths="0, 1")
    lat = latents["samples"]
    assert torch.equal(lat[0:1], ed.latent)
    pair = {"samples": ed.latent.repeat(2, *([1] * (ed.latent.ndim - 1))), "batch_index": [0, 0]}
    assert torch.equal(lat[1:2], ksampler(ed, latent=pair)[1:2])     # strength 1 = KSampler on the same batch
    assert panels.shape[0] == 2 and fan.ndim == 4 and fan.shape[0] == 1


# -- DiffEdit from the editor, before it edits: the analytic editor -------------------------------------

#: held-out scenes and instructions: drawn from these seeds at test time, none of them used to choose the editor's
#: settings (tau, the palette, PICK were fixed before any mask was measured); DESIGN: seeds only the sanity test uses
DESIGN = range(4)
HELD_OUT = range(100, 124)
#: the documented bounds (docs/capabilities.md, section 6): IoU with the changed object, heat where nothing changes
MIN_IOU, MAX_HEAT_OUTSIDE = 0.9, 1e-6
SCALE = 8


def _up(region):
    return region.float().repeat_interleave(SCALE, 0).repeat_interleave(SCALE, 1)


def _editor_masks(comfy, model, scene, **settings):
    query = E.editor_conditioning(scene.instruction, scene.source)
    keep = E.editor_conditioning(None, scene.source)
    heat, mask, _, _ = comfy.run_node("DDE_DiffEditMask", model=model, query=query, latent={"samples": scene.source},
                                      reference=keep, **settings).args
    return heat[0], mask[0]


@pytest.fixture(scope="module")
def analytic_editor(comfy):
    ed = E.AnalyticEditor()
    return {family: E.make_editor_model(ed, family) for family in ("flow", "eps")}


def test_analytic_editor_scenes_and_instructions(comfy):
    """Each scene's instruction names one object's colour, asks for a colour no object has, and picks exactly that
    object's pixels (the editor's own reading of the source)."""
    for seed in (*DESIGN, *HELD_OUT):
        s = E.editor_scene(seed)
        a, b = s.instruction
        assert a in s.colours and b not in s.colours and len(set(s.colours)) == len(s.colours)
        assert torch.equal(E.AnalyticEditor.picked(s.source[0], E.PALETTE[a]), s.changed)
        assert s.changed.sum() >= 9 and sum(int(o.sum()) for o in s.objects) == int(torch.stack(s.objects).any(0).sum())


@pytest.fixture(scope="module")
def held_out(comfy, analytic_editor):
    """Per family and threshold method, over the held-out scenes: IoU and recall with the object the instruction
    changes, the largest heat a latent cell away from it, and whether any other object got a mask pixel."""
    cache = {}

    def get(family):
        if family not in cache:
            figures = {m: {"iou": [], "recall": [], "outside": [], "beyond_rim": [], "other_objects": []}
                       for m in ("minmax", "rescale")}
            for seed in HELD_OUT:
                s = E.editor_scene(seed)
                truth = _up(s.changed)
                rim = torch.nn.functional.max_pool2d(truth[None, None], 2 * SCALE + 1, 1, SCALE)[0, 0] > 0
                others = [_up(o) > 0 for o in s.objects if not torch.equal(o, s.changed)]
                for method, fig in figures.items():
                    heat, mask = _editor_masks(comfy, analytic_editor[family], s, threshold_method=method)
                    fig["iou"].append(iou(mask, truth))
                    fig["recall"].append(float((mask * truth).sum() / truth.sum()))
                    fig["outside"].append(float(heat[~rim].max()))
                    fig["beyond_rim"].append(float(mask[~rim].max()))
                    fig["other_objects"].append(max(float(mask[o].max()) for o in others))
            cache[family] = figures
            for method, fig in figures.items():
                print(f"\n{family} {method}: IoU min {min(fig['iou']):.3f} mean {sum(fig['iou']) / len(fig['iou']):.3f}, "
                      f"recall min {min(fig['recall']):.4f}, heat outside max {max(fig['outside']):.2e}")
        return cache[family]

    return get


@pytest.mark.parametrize("family", ["flow", "eps"])
def test_diffedit_from_the_editor_finds_where_the_instruction_acts(held_out, family):
    """Held-out scenes and instructions (24): DiffEdit Mask, query = the instruction, reference = the empty
    instruction, both with the picture as reference latent. ``minmax``: the mask's IoU with the object the
    instruction changes >= MIN_IOU. The default (``rescale``): at least 98 % of the object and at most a rim of one
    latent cell more (it cuts lower: these objects cover less than its 8 % clip). Both: the heat is <=
    MAX_HEAT_OUTSIDE everywhere a latent cell away from the object (the other objects and the background: the two
    posteriors agree there), and no other object gets a mask pixel."""
    fig = held_out(family)
    assert min(fig["minmax"]["iou"]) >= MIN_IOU, fig["minmax"]["iou"]
    assert min(fig["rescale"]["recall"]) >= 0.98, fig["rescale"]["recall"]
    assert max(fig["rescale"]["beyond_rim"]) == 0.0
    for method in fig:
        assert max(fig[method]["outside"]) <= MAX_HEAT_OUTSIDE, (method, fig[method]["outside"])
        assert max(fig[method]["other_objects"]) == 0.0, method


def test_the_mask_comes_from_the_editors_reading_of_the_picture(comfy, analytic_editor):
    """Not from the instruction alone: the same instruction on the picture moved by 8 latent cells gives the mask
    moved by 64 pixels; without the reference latent the editor cannot run (the error says so)."""
    model = analytic_editor["flow"]
    a = E.editor_scene(HELD_OUT[0])
    moved = E.EditorScene(a.source.roll((8, 8), (-2, -1)), [o.roll((8, 8), (0, 1)) for o in a.objects], a.colours,
                          a.instruction, a.changed.roll((8, 8), (0, 1)))
    _, mask_a = _editor_masks(comfy, model, a, threshold_method="minmax")
    _, mask_b = _editor_masks(comfy, model, moved, threshold_method="minmax")
    assert iou(mask_a, _up(a.changed)) >= MIN_IOU and iou(mask_b, _up(moved.changed)) >= MIN_IOU
    assert iou(mask_a, mask_b) < 0.5
    with pytest.raises(Exception, match="reference latent"):
        comfy.run_node("DDE_DiffEditMask", model=model, query=[[E.AnalyticEditor.context(a.instruction), {}]],
                       latent={"samples": a.source}, reference=[[E.AnalyticEditor.context(None), {}]], n=1)


def test_unconnected_reference_is_the_query_zeroed_out_which_keeps_the_reference_latents(comfy, analytic_editor):
    """Reference not connected: DiffEdit Mask zeroes the query's text and keeps its reference latents (as
    ConditioningZeroOut does), i.e. the editor with no instruction: bit for bit the mask of the empty instruction."""
    model = analytic_editor["flow"]
    for seed in HELD_OUT[:3]:
        s = E.editor_scene(seed)
        heat, mask = _editor_masks(comfy, model, s)
        alone = comfy.run_node("DDE_DiffEditMask", model=model, query=E.editor_conditioning(s.instruction, s.source),
                               latent={"samples": s.source}).args
        assert torch.equal(alone[0][0], heat) and torch.equal(alone[1][0], mask), seed


def test_the_documented_use_states_the_tested_bounds_and_figures(comfy, held_out):
    """docs/capabilities.md section 6 gives the bounds tested here and the figures measured (both families give
    them); the DiffEdit Mask help page describes the use."""
    with open(os.path.join(PACK_ROOT, "docs", "capabilities.md"), encoding="utf-8") as f:
        caps = f.read()
    with open(os.path.join(PACK_ROOT, "js", "docs", "DDE_DiffEditMask", "en.md"), encoding="utf-8") as f:
        page = f.read()
    section = caps.split("## 6.", 1)[1].split("\n## ", 1)[0]
    assert f"IoU ≥ {MIN_IOU}" in section and f"≤ {MAX_HEAT_OUTSIDE:.0e}".replace("e-0", "e-") in section
    assert f"{len(HELD_OUT)} held-out" in section
    for family in ("flow", "eps"):
        for method, fig in held_out(family).items():
            row = next(line for line in section.splitlines() if line.startswith(f"| {method}"))
            cells = row.split("|")
            said = [float(v) for v in re.findall(r"\d+\.\d+", cells[2])[:2] + re.findall(r"\d+\.\d+", cells[3])[:1]]
            measured = [round(min(fig["iou"]), 3), round(sum(fig["iou"]) / len(fig["iou"]), 3),
                        round(min(fig["recall"]), 3)]
            assert said == measured, (family, method, row, measured)
            assert max(fig["outside"]) == 0.0   # the table says 0
    assert re.search(r"instruction editor.*instruction's conditioning as \*\*query\*\*.*empty instruction as \*\*reference\*\*", page, re.S)
