"""Registering an instruction editor's picture onto its source (nodes/core/register.py): the fitted shift, zoom,
turn and size on synthetic edits with one local edit and the editor's colour shift; the change map then finds the
edited region where the unregistered difference lights up the whole picture."""

import pytest
import torch
import torch.nn.functional as F

from dde_world.edits import geometric_edit, synthetic_edit


@pytest.fixture(scope="module")
def core(pack):
    from dde_pack.nodes.core import edits, errors, register

    return type("Core", (), {"edits": edits, "register": register, "Err": errors.InputError})


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def grown(region, px):
    return F.max_pool2d(region[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


def _rgb(img):
    return img.permute(0, 3, 1, 2)


# the editor's geometry, as in the docs (docs/capabilities.md) and tests/test_comfy_register.py
GEOMETRY = {
    "shift 1 px": dict(dx=1), "shift 3, -2 px": dict(dx=3, dy=-2), "shift -8, 5 px": dict(dx=-8, dy=5),
    "shift 8, 8 px": dict(dx=8, dy=8), "shift 2.5, -1.5 px": dict(dx=2.5, dy=-1.5),
    "scale 0.97": dict(scale=0.97), "scale 1.03": dict(scale=1.03), "scale 1.02 + shift": dict(scale=1.02, dx=2.5, dy=-1.5),
    "output 272 x 288": dict(out_size=(288, 272)), "output 224 x 200 + shift 3": dict(out_size=(200, 224), dx=3),
}


@pytest.mark.parametrize("name", list(GEOMETRY))
def test_the_fit_recovers_the_editors_geometry(core, name):
    kw = GEOMETRY[name]
    before, after, _ = geometric_edit(0, **kw)
    if after.shape[1:3] != before.shape[1:3]:
        after = F.interpolate(_rgb(after), size=before.shape[1:3], mode="bilinear", antialias=True).permute(0, 2, 3, 1)
    _, valid, (t,) = core.register.register(_rgb(before), _rgb(after), "similarity")
    assert abs(t.dx - kw.get("dx", 0.0)) < 0.06 and abs(t.dy - kw.get("dy", 0.0)) < 0.06, t
    assert abs(t.scale - kw.get("scale", 1.0)) < 5e-4 and abs(t.rotation) < 0.05, t
    assert t.identity == (kw.get("dx", 0) == kw.get("dy", 0) == 0 and kw.get("scale", 1.0) == 1.0)


def test_rotation_and_shift_only_mode(core):
    before, after, _ = geometric_edit(1, rotation=0.5, dx=2)
    _, _, (t,) = core.register.register(_rgb(before), _rgb(after), "similarity")
    assert abs(t.rotation - 0.5) < 0.03 and abs(t.dx - 2) < 0.06, t
    _, _, (s,) = core.register.register(_rgb(before), _rgb(after), "shift")
    assert s.scale == 1.0 and s.rotation == 0.0 and abs(s.dx - 2) < 0.3


@pytest.mark.parametrize("name", list(GEOMETRY))
def test_registered_change_map_finds_the_region_where_the_plain_one_lights_up(core, name):
    before, after, region = geometric_edit(0, **GEOMETRY[name])
    off = core.edits.edit_change(before, after, align="off")
    found = core.edits.edit_change(before, after, align="similarity")
    assert iou(found.mask[0] > 0.5, region) >= 0.95
    # exact 0 beyond the region's 1-px border (bilinear resampling of the editor's hard edge reaches one pixel)
    assert float(found.change_map[0][~grown(region, 1)].max()) == 0.0
    assert found.aligned.shape == before.shape
    if name != "output 272 x 288":       # a pure resize is already undone by the plain difference
        assert float(off.change_map[0][~grown(region, 1)].max()) > 0.5   # without the fit: change everywhere


def test_a_pair_without_geometry_gives_the_same_bits_as_align_off(core):
    for seed in (0, 1):
        before, after, _ = synthetic_edit(seed)
        ref = core.edits.change_map_from_edit(before, after)
        for align in ("shift", "similarity"):
            found = core.edits.edit_change(before, after, align=align)
            assert found.transforms[0].identity
            assert torch.equal(found.change_map, ref[0]) and torch.equal(found.mask, ref[1])
            assert torch.equal(found.aligned, after)


def test_outside_the_editors_frame_the_source_stands(core):
    before, after, region = geometric_edit(2, dx=8, dy=-6)
    found = core.edits.edit_change(before, after, align="shift")
    # the source's right 8 columns and top 6 rows were drawn out of the editor's frame: 'before' there, map 0
    assert torch.equal(found.aligned[0, :, -7:], before[0, :, -7:]) and torch.equal(found.aligned[0, :5], before[0, :5])
    assert float(found.change_map[0, :, -8:].max()) == 0.0


def test_a_global_restyle_is_not_explained(core):
    before, after, region = geometric_edit(0, dx=3, restyle=True)
    found = core.edits.edit_change(before, after, align="similarity")
    assert float(found.mask.mean()) > 0.5     # no geometry explains it: the node says so (tests/test_comfy_register.py)


def test_batches_fit_each_image(core):
    pairs = [geometric_edit(0, dx=3), geometric_edit(0, scale=1.02)]
    before = torch.cat([p[0] for p in pairs])
    after = torch.cat([p[1] for p in pairs])
    found = core.edits.edit_change(before, after, align="similarity")
    a, b = found.transforms
    assert abs(a.dx - 3) < 0.06 and abs(a.scale - 1) < 5e-4 and abs(b.scale - 1.02) < 5e-4 and abs(b.dx) < 0.06
    for i, (_, _, region) in enumerate(pairs):
        assert iou(found.mask[i] > 0.5, region) >= 0.95


def test_bad_align_names_the_input(core):
    before, after, _ = synthetic_edit(0)
    with pytest.raises(core.Err, match="align"):
        core.edits.edit_change(before, after, align="affine")
