"""The map and metrics nodes as ComfyUI loads them: schemas, real outputs, previews, errors."""

import os

import pytest
import torch

MAP_NODES = ["DDE_LinearGradientMap", "DDE_RadialGradientMap", "DDE_AngularGradientMap", "DDE_MaskDistanceFalloff",
             "DDE_FeatherChangeMap", "DDE_ImageChannelMap", "DDE_DepthChangeMap", "DDE_SemanticChangeMap",
             "DDE_CombineChangeMaps", "DDE_ChangeMapCurves", "DDE_QuantizeChangeMap", "DDE_InvertChangeMap",
             "DDE_StabilizeChangeMap"]


@pytest.fixture(scope="module")
def Err(comfy):
    return comfy.module("nodes.core.errors").InputError


def _run(comfy, node_id, **kwargs):
    out = comfy.node(node_id).execute(**kwargs)
    return out


def _mask_of(out, comfy, shape):
    m = out[0]
    assert isinstance(m, torch.Tensor) and m.dtype == torch.float32 and tuple(m.shape) == shape
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    entries = out.ui["dde_overlay"]
    assert len(entries) == min(shape[0], 8)
    temp = os.path.join(comfy.tmp, "temp")
    assert all(os.path.isfile(os.path.join(temp, e["map"]["filename"])) for e in entries)
    return m


def test_nodes_are_registered_in_their_categories_with_optional_reference(comfy):
    for node_id in MAP_NODES + ["DDE_ChangeMapAdherence"]:
        assert node_id in comfy.pack_ids
        schema = comfy.node(node_id).GET_SCHEMA()
        assert schema.category == ("differential edit/metrics" if "Adherence" in node_id else "differential edit/maps")
        assert os.path.isfile(os.path.join(os.path.dirname(comfy.module("nodes").__file__), "..", "js", "docs",
                                           node_id, "en.md")), node_id
    info = comfy.node("DDE_LinearGradientMap").GET_NODE_INFO_V1()
    assert "reference" in info["input"]["optional"] and "width" in info["input"]["required"]
    assert comfy.node("DDE_ChangeMapAdherence").GET_NODE_INFO_V1()["output_name"][:3] == (
        ["correlation", "spearman", "distance"])


def test_gradients_through_the_nodes(comfy):
    out = _run(comfy, "DDE_LinearGradientMap", width=4, height=2, batch_size=3, angle=0.0, offset=0.0, curve="linear",
               gamma=1.0, invert=False)
    m = _mask_of(out, comfy, (3, 2, 4))
    assert m[2, 1].tolist() == [0.125, 0.375, 0.625, 0.875]
    ref = torch.zeros(2, 16, 8, 3)
    out = _run(comfy, "DDE_RadialGradientMap", width=512, height=512, batch_size=1, centre_x=0.5, centre_y=0.5,
               inner_radius=0.0, outer_radius=0.5, curve="linear", gamma=1.0, invert=True, reference=ref)
    m = _mask_of(out, comfy, (2, 16, 8))                  # size and batch from the reference image
    assert m[0, 8, 4].item() == pytest.approx(1 - (1 - 0.5 ** 0.5 / 4))   # d = 0.707 px, outer = 4 px, inverted
    out = _run(comfy, "DDE_AngularGradientMap", width=4, height=4, batch_size=1, centre_x=0.5, centre_y=0.5,
               start_angle=0.0, mirror=False, curve="linear", gamma=1.0, invert=False, reference=torch.zeros(1, 4, 4))
    assert _mask_of(out, comfy, (1, 4, 4))[0, 1, 2].item() == pytest.approx(315 / 360)


def test_maps_from_masks_images_and_heat(comfy):
    mask = torch.zeros(1, 21, 21)
    mask[0, 10, 10] = 1.0
    out = _run(comfy, "DDE_MaskDistanceFalloff", mask=mask, inner=2.0, outer=6.0, threshold=0.5, curve="linear",
               gamma=1.0, invert=False)
    m = _mask_of(out, comfy, (1, 21, 21))
    assert m[0, 13, 14].item() == pytest.approx(0.25) and m[0, 11, 11].item() == 1.0 and m[0, 10, 17].item() == 0.0
    out = _run(comfy, "DDE_FeatherChangeMap", mask=mask, radius=2, floor=0.2, mode="inward")
    f = _mask_of(out, comfy, (1, 21, 21))
    assert f[0, 10, 11].item() == pytest.approx(0.2) and 0.2 < f[0, 10, 10].item() < 1.0
    img = torch.tensor([0.2, 0.4, 0.6]).view(1, 1, 1, 3).expand(1, 2, 2, 3)
    out = _run(comfy, "DDE_ImageChannelMap", image=img, channel="luminance (Rec. 601)", invert=False)
    assert _mask_of(out, comfy, (1, 2, 2))[0, 0, 0].item() == pytest.approx(0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6)
    depth = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 4, 1).expand(1, 1, 4, 3)
    out = _run(comfy, "DDE_DepthChangeMap", depth=depth, change="far", near_value=0.8, far_value=0.2, curve="linear",
               gamma=1.0)
    assert _mask_of(out, comfy, (1, 1, 4))[0, 0].tolist() == pytest.approx([1.0, 1 - 0.05 / 0.6, 1 - 0.3 / 0.6, 0.0])
    heat = torch.tensor([[[0.0, 0.5, 1.0]]])
    out = _run(comfy, "DDE_SemanticChangeMap", heat=heat, floor=0.2, ceiling=0.9, gamma=2.0, normalize=False)
    assert _mask_of(out, comfy, (1, 1, 3))[0, 0].tolist() == pytest.approx([0.2, 0.375, 0.9])


def test_operations_through_the_nodes(comfy):
    a = torch.tensor([[[0.2, 0.6, 0.9]]])
    b = torch.tensor([[[0.5, 0.5, 0.5]]]).expand(2, 1, 3)
    out = _run(comfy, "DDE_CombineChangeMaps", map_a=a, map_b=b, operation="screen", factor=0.5)
    assert _mask_of(out, comfy, (2, 1, 3))[1, 0].tolist() == pytest.approx([0.6, 0.8, 0.95])
    out = _run(comfy, "DDE_ChangeMapCurves", change_map=a, curve="linear", gamma=1.0, in_low=0.2, in_high=0.8,
               out_low=0.1, out_high=0.9)
    assert _mask_of(out, comfy, (1, 1, 3))[0, 0].tolist() == pytest.approx([0.1, 0.6333333, 0.9])
    ramp = torch.linspace(0, 1, 101).view(1, 1, -1)
    out = _run(comfy, "DDE_QuantizeChangeMap", change_map=ramp, levels=4)
    assert _mask_of(out, comfy, (1, 1, 101)).unique().tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    once = _run(comfy, "DDE_InvertChangeMap", change_map=a)[0]
    twice = _run(comfy, "DDE_InvertChangeMap", change_map=once)[0]
    assert once[0, 0].tolist() == pytest.approx([0.8, 0.4, 0.1]) and torch.allclose(twice, a)
    jpeg = torch.tensor([[[3 / 255, 0.5, 250 / 255]]])
    out = _run(comfy, "DDE_StabilizeChangeMap", change_map=jpeg, epsilon=0.02)
    assert _mask_of(out, comfy, (1, 1, 3))[0, 0].tolist() == [0.0, 0.5, 1.0]


def test_bad_input_raises_naming_the_node_and_input(comfy, Err):
    nan = torch.tensor([[[float("nan"), 0.5]]])
    with pytest.raises(Err, match=r"^Quantize Change Map: input 'change_map' expected finite values"):
        _run(comfy, "DDE_QuantizeChangeMap", change_map=nan, levels=3)
    with pytest.raises(Err, match=r"^Quantize Change Map: input 'levels' expected a whole number of levels >= 2"):
        _run(comfy, "DDE_QuantizeChangeMap", change_map=torch.zeros(1, 2, 2), levels=1)
    with pytest.raises(Err, match=r"^Combine Change Maps: input 'map_b' expected 1 map or 3 maps"):
        _run(comfy, "DDE_CombineChangeMaps", map_a=torch.zeros(3, 2, 2), map_b=torch.zeros(2, 2, 2), operation="min",
             factor=0.5)
    with pytest.raises(Err, match=r"^Change Map from Image: input 'image' expected an IMAGE with an alpha channel"):
        _run(comfy, "DDE_ImageChannelMap", image=torch.zeros(1, 2, 2, 3), channel="alpha", invert=False)
    with pytest.raises(Err, match=r"^Linear Gradient Change Map: input 'reference'"):
        _run(comfy, "DDE_LinearGradientMap", width=4, height=4, batch_size=1, angle=0.0, offset=0.0, curve="linear",
             gamma=1.0, invert=False, reference=torch.full((1, 4, 4), float("nan")))


def test_adherence_node_ranks_a_correct_edit_above_a_wrong_one(comfy, Err):
    g = torch.Generator().manual_seed(0)
    original = torch.rand(1, 64, 64, 3, generator=g) * 0.5
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    change_map = ((xx - 8) / 16).clamp(0, 1).unsqueeze(0)       # keep the left quarter, ramp, change the right quarter
    up = comfy.module("nodes.core.maps").resize_maps(change_map, (64, 64)).unsqueeze(-1)
    correct = original + 0.4 * up
    wrong = original + 0.4 * (1 - up)
    good = comfy.run_node("DDE_ChangeMapAdherence", original=original, result=correct, change_map=change_map, smooth=0,
                          invert=False, calibration="")
    bad = comfy.run_node("DDE_ChangeMapAdherence", original=original, result=wrong, change_map=change_map, smooth=0,
                         invert=False)
    names = ["correlation", "spearman", "distance", "leakage", "leakage_max", "seam", "mean_change"]
    g_vals, b_vals = dict(zip(names, good.args[:7])), dict(zip(names, bad.args[:7]))
    assert all(isinstance(v, float) for v in g_vals.values())
    assert g_vals["correlation"] > 0.99 > -0.99 > b_vals["correlation"]
    assert g_vals["distance"] < 0.01 < 0.3 < b_vals["distance"]
    assert g_vals["leakage"] < 1e-3 and b_vals["leakage"] == pytest.approx(0.4, abs=0.01)   # bilinear upsampling edge
    report, realized = good.args[7], good.args[8]
    assert report.startswith("metric") and "NO CALIBRATION" in report
    assert realized.shape == (1, 32, 32) and realized.dtype == torch.float32
    assert (realized - change_map).abs().max().item() < 0.02   # only the ramp's kinks differ (bilinear up, area down)
    entry = good.ui["dde_overlay"][0]
    assert entry["base"] is not None and entry["label"] == "realized change"
    calibrated = comfy.run_node("DDE_ChangeMapAdherence", original=original, result=correct, change_map=change_map,
                                smooth=1, invert=False, calibration="0:0\n1:0.4")
    assert "2-point" in calibrated.args[7] and calibrated.args[2] < 0.02
    flipped = comfy.run_node("DDE_ChangeMapAdherence", original=original, result=wrong, change_map=change_map, smooth=0,
                             invert=True)
    assert flipped.args[0] > 0.99
    with pytest.raises(Err, match=r"^Change Map Adherence: input 'calibration' expected pairs of two numbers"):
        comfy.run_node("DDE_ChangeMapAdherence", original=original, result=correct, change_map=change_map, smooth=0,
                       invert=False, calibration="0.5")
