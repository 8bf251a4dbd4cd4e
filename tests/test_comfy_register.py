"""Change Map from Edit on real ComfyUI when the editor moved the picture: the node's align input, its aligned
output, the fitted transform on the node and the global-restyle message; before/after IoU with the true region."""

import re

import pytest
import torch
import torch.nn.functional as F

from dde_world.edits import geometric_edit, synthetic_edit

NODE = "DDE_ChangeMapFromEdit"
CASES = {"shift 3, -2 px": dict(dx=3, dy=-2), "shift -8, 5 px": dict(dx=-8, dy=5), "scale 0.97": dict(scale=0.97),
         "scale 1.03 + shift": dict(scale=1.03, dx=2, dy=1), "output 224 x 200 + shift 3": dict(out_size=(200, 224), dx=3)}


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def grown(region, px):
    return F.max_pool2d(region[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


@pytest.mark.parametrize("name", list(CASES))
def test_registered_map_and_composite_where_the_plain_map_lights_up(comfy, name):
    before, after, region = geometric_edit(4, **CASES[name])
    off = comfy.run_node(NODE, before=before, after=after, align="off")
    out = comfy.run_node(NODE, before=before, after=after)            # the default: similarity
    cmap, mask, aligned = out.args
    assert iou(mask[0] > 0.5, region) >= 0.95
    assert float(off.args[0][0][~grown(region, 1)].max()) > 0.5     # today's map: change all over the picture
    comp = comfy.run_node("DDE_CompositeByChangeMap", original=before, edited=aligned, change_map=cmap)[0]
    keep = ~grown(region, 1)
    assert torch.equal(comp[0][keep], before[0][keep])                # exact outside the region (and its 1-px border)
    inner = region & (cmap[0] == 1.0)
    assert inner.float().sum() / region.float().sum() > 0.9
    assert torch.equal(comp[0][inner], aligned[0][inner])             # the editor's registered result inside
    label = out.ui["dde_overlay"][0]["label"]
    kw = CASES[name]
    said = re.search(r"aligned: shift ([-+]\d+\.\d+), ([-+]\d+\.\d+) px, scale (\d\.\d+)", label)
    assert said, label
    fit = [float(v) for v in said.groups()]
    assert abs(fit[0] - kw.get("dx", 0)) < 0.1 and abs(fit[1] - kw.get("dy", 0)) < 0.1, label
    assert abs(fit[2] - kw.get("scale", 1.0)) < 0.001, label
    assert out.ui["dde_messages"] == []


def test_align_off_keeps_todays_outputs_bit_for_bit(comfy):
    before, after, region = synthetic_edit(3)
    core = comfy.module("nodes.core.edits")
    ref = core.change_map_from_edit(before, after, "affine", 6.0, 15.0, 2, 3)
    for align in ("off", "similarity"):       # no geometry: the fit is the identity and changes nothing
        cmap, mask, aligned = comfy.run_node(NODE, before=before, after=after, grow=2, softness=3, align=align).args
        assert torch.equal(cmap, ref[0]) and torch.equal(mask, ref[1]) and torch.equal(aligned, after)


def test_a_global_restyle_is_said_on_the_node(comfy):
    before, after, _ = geometric_edit(4, dx=3, restyle=True)
    out = comfy.run_node(NODE, before=before, after=after)
    msgs = out.ui["dde_messages"]
    assert len(msgs) == 1 and "no shift or zoom explains it" in msgs[0] and "% of the picture changed" in msgs[0]
    share = float(out.args[1].mean())
    assert f"{100 * share:.0f} %" in msgs[0]
    off = comfy.run_node(NODE, before=before, after=after, align="off").ui["dde_messages"]
    assert len(off) == 1 and "set align to similarity" in off[0]


def test_the_align_input_has_a_tooltip_and_the_docs_say_the_same(comfy):
    import os
    from dde_world.locate import PACK_ROOT

    reg = comfy.module("nodes.core.register")
    spec = next(i for i in comfy.node(NODE).GET_SCHEMA().inputs if i.id == "align")
    assert spec.default == "similarity" and list(spec.options) == list(reg.ALIGN)
    page = open(os.path.join(PACK_ROOT, "js", "docs", NODE, "en.md"), encoding="utf-8").read()
    caps = open(os.path.join(PACK_ROOT, "docs", "capabilities.md"), encoding="utf-8").read()
    claim = f"by {reg.IDENTITY_PX} px or more"
    for text in (spec.tooltip, page, caps):
        assert claim in text and "similarity" in text
    for text in (page, caps):   # the measured figures the tests hold
        assert "IoU with the true region ≥ 0.95" in text and "1-px border" in text
