"""Change-map constructors and operations: exact formula values, invariants, errors, properties."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def C(pack):
    from dde_pack.nodes.core import construct

    return construct


@pytest.fixture(scope="module")
def Err(pack):
    from dde_pack.nodes.core.errors import InputError

    return InputError


def _check_map(out, shape):
    assert out.dtype == torch.float32
    assert tuple(out.shape) == tuple(shape)
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def _dot(n=9, y=4, x=4, batch=1):
    m = torch.zeros(batch, n, n)
    m[:, y, x] = 1.0
    return m


# -- curves and ramps ------------------------------------------------------------------------------

def test_curves_exact_values_endpoints_and_monotone(C):
    t = torch.tensor([0.25])
    expect = {"linear": 0.25, "smoothstep": 3 / 16 - 2 / 64, "smootherstep": 6 / 1024 - 15 / 256 + 10 / 64,
              "gamma": 0.25 ** 2.0, "ease-in": 0.0625, "ease-out": 1 - 0.75 ** 2,
              "ease-in-out": (1 - math.cos(math.pi / 4)) / 2}
    assert set(expect) == set(C.CURVES)
    ramp = torch.linspace(0, 1, 101)
    for name, value in expect.items():
        assert C.apply_curve(t, name, 2.0).item() == pytest.approx(value, abs=1e-6), name
        out = C.apply_curve(ramp, name, 2.0)
        assert out[0].item() == 0.0 and out[-1].item() == pytest.approx(1.0, abs=1e-6), name
        assert bool((out[1:] >= out[:-1] - 1e-7).all()), name
    assert C.apply_curve(t, "gamma", 0.5).item() == pytest.approx(0.5)


def test_ramp_rises_falls_and_steps_strictly_above(C):
    x = torch.tensor([0.0, 0.2, 0.3, 0.5, 1.0])
    assert C.ramp(x, 0.2, 0.6).tolist() == pytest.approx([0.0, 0.0, 0.25, 0.75, 1.0])
    assert C.ramp(x, 0.6, 0.2).tolist() == pytest.approx([1.0, 1.0, 0.75, 0.25, 0.0])
    assert C.ramp(x, 0.3, 0.3).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_bad_curve_and_gamma_name_the_input(C, Err):
    with pytest.raises(Err, match=r"^input 'curve' expected one of 'linear'"):
        C.apply_curve(torch.zeros(1), "cubic", 1.0)
    with pytest.raises(Err, match=r"^input 'gamma' expected a number in \(0.0, inf\]"):
        C.apply_curve(torch.zeros(1), "gamma", 0.0)
    with pytest.raises(Err, match=r"input 'gamma' expected a finite number"):
        C.apply_curve(torch.zeros(1), "gamma", float("nan"))


# -- canvases and gradients ------------------------------------------------------------------------

def test_canvas_from_numbers_image_or_mask(C, Err):
    assert C.canvas(8, 4, 2, None) == (2, 4, 8)
    assert C.canvas(8, 4, 2, torch.zeros(3, 5, 6, 3)) == (3, 5, 6)
    assert C.canvas(8, 4, 2, torch.zeros(1, 7, 9)) == (1, 7, 9)
    with pytest.raises(Err, match="input 'width' expected a whole number >= 1"):
        C.canvas(0, 4, 1, None)
    with pytest.raises(Err, match="input 'reference'"):
        C.canvas(8, 4, 1, torch.full((1, 4, 4), float("nan")))


def test_linear_gradient_exact_values(C):
    out = C.linear_gradient((2, 2, 4), 0.0, 0.0)
    _check_map(out, (2, 2, 4))
    assert out[1, 1].tolist() == [0.125, 0.375, 0.625, 0.875]     # pixel centres 0.5..3.5 of a 4-px canvas
    assert C.linear_gradient((1, 4, 3), 90.0, 0.0)[0, :, 2].tolist() == pytest.approx([0.125, 0.375, 0.625, 0.875])
    assert C.linear_gradient((1, 1, 4), 180.0, 0.0)[0, 0].tolist() == pytest.approx([0.875, 0.625, 0.375, 0.125])
    diag = C.linear_gradient((1, 2, 2), 45.0, 0.0)[0]
    assert diag.flatten().tolist() == pytest.approx([0.25, 0.5, 0.5, 0.75], abs=1e-6)
    shifted = C.linear_gradient((1, 1, 4), 0.0, 0.25)[0, 0]
    assert shifted.tolist() == pytest.approx([0.0, 0.125, 0.375, 0.625])
    inv = C.linear_gradient((1, 1, 4), 0.0, 0.0, "smoothstep", 1.0, True)[0, 0]
    assert inv[0].item() == pytest.approx(1 - (3 * 0.125 ** 2 - 2 * 0.125 ** 3))


def test_radial_gradient_exact_values_in_fractions_of_the_short_side(C, Err):
    out = C.radial_gradient((1, 8, 16), 0.5, 0.5, 0.25, 0.5)     # S = 8: inner 2 px, outer 4 px, centre (8, 4)
    _check_map(out, (1, 8, 16))
    d = math.hypot(11.5 - 8, 4.5 - 4)                            # pixel (y=4, x=11)
    assert out[0, 4, 11].item() == pytest.approx(1 - (d - 2) / 2, abs=1e-6)
    assert out[0, 4, 8].item() == 1.0                            # d = 0.71 < inner
    assert out[0, 0, 0].item() == 0.0
    hard = C.radial_gradient((1, 8, 8), 0.5, 0.5, 0.25, 0.25)[0]
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard[4, 5].item() == 1.0 and hard[4, 6].item() == 0.0   # d = 1.58 <= 2, d = 2.55 > 2
    with pytest.raises(Err, match="input 'outer_radius' expected at least inner_radius"):
        C.radial_gradient((1, 8, 8), 0.5, 0.5, 0.5, 0.25)


def test_angular_gradient_exact_values(C):
    out = C.angular_gradient((1, 4, 4), 0.5, 0.5, 0.0)[0]        # centre (2, 2); angles clockwise from the right
    assert out[2, 2].item() == pytest.approx(45 / 360)            # centre of the pixel at (2.5, 2.5)
    assert out[2, 1].item() == pytest.approx(135 / 360)
    assert out[1, 1].item() == pytest.approx(225 / 360)
    assert out[1, 2].item() == pytest.approx(315 / 360)
    assert C.angular_gradient((1, 4, 4), 0.5, 0.5, 90.0)[0, 2, 2].item() == pytest.approx(315 / 360)
    mirrored = C.angular_gradient((1, 4, 4), 0.5, 0.5, 0.0, mirror=True)[0]
    assert mirrored[1, 2].item() == pytest.approx(0.25) and mirrored[1, 1].item() == pytest.approx(0.75)


# -- from a mask -----------------------------------------------------------------------------------

def test_distance_is_exact_euclidean_from_a_single_pixel(C):
    d = C.distance_to_mask(_dot(21, 10, 10) > 0.5, 9.0)[0]
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    true = torch.sqrt((yy - 10) ** 2 + (xx - 10) ** 2)
    near = true <= 9.0
    assert torch.equal(d[near], true[near])                   # diagonals and knight moves included
    assert bool(torch.isinf(d[~near]).all())


def test_distance_matches_brute_force_on_random_masks(C):
    g = torch.Generator().manual_seed(3)
    inside = torch.rand(2, 13, 17, generator=g) > 0.93
    d = C.distance_to_mask(inside, 100.0)
    yy, xx = torch.meshgrid(torch.arange(13.0), torch.arange(17.0), indexing="ij")
    for b in range(2):
        pts = torch.nonzero(inside[b]).float()
        brute = torch.sqrt((yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2).amin(-1)
        assert torch.allclose(d[b], brute)


def test_distance_falloff_exact_values(C, Err):
    mask = _dot(21, 10, 10)
    out = C.distance_falloff(mask, 2.0, 6.0)[0]
    assert out[10, 10].item() == 1.0
    assert out[11, 11].item() == 1.0                          # d = 1.41 <= inner
    assert out[13, 14].item() == pytest.approx(1 - (5 - 2) / 4)  # d = 5 (3-4-5)
    assert out[10, 16].item() == 0.0 and out[0, 0].item() == 0.0
    half = torch.zeros(1, 4, 12)
    half[..., :4] = 1.0
    row = C.distance_falloff(half, 1.0, 5.0)[0, 2]
    assert row.tolist() == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0, 0, 0])
    smooth = C.distance_falloff(half, 1.0, 5.0, curve="smoothstep")[0, 2, 6].item()
    assert smooth == pytest.approx(0.5)
    soft = half * 0.4
    assert C.distance_falloff(soft, 1.0, 5.0, threshold=0.5).max().item() == 0.0   # nothing reaches the threshold
    assert C.distance_falloff(soft, 1.0, 5.0, threshold=0.4)[0, 2, 6].item() == pytest.approx(0.5)
    hard = C.distance_falloff(half, 2.0, 2.0)[0, 2]
    assert hard.tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(Err, match="input 'outer' expected at least inner"):
        C.distance_falloff(half, 3.0, 2.0)


def test_feather_exact_gaussian_and_floor(C, Err):
    w = torch.exp(-torch.arange(-2.0, 3.0) ** 2 / 2.0)          # radius 2: kernel 5, sigma 1
    w = w / w.sum()
    out = C.feather(_dot(), 2, 0.0, "both")[0]
    assert out[4, 4].item() == pytest.approx(float(w[2] ** 2), abs=1e-6)
    assert out[5, 3].item() == pytest.approx(float(w[3] * w[1]), abs=1e-6)
    assert out[4, 7].item() == 0.0 and out[0, 0].item() == 0.0  # beyond the radius: exactly 0
    floored = C.feather(_dot(), 2, 0.1, "both")[0]
    assert floored[4, 4].item() == pytest.approx(0.1 + 0.9 * float(w[2] ** 2), abs=1e-6)
    assert floored[4, 7].item() == pytest.approx(0.1) and floored[0, 0].item() == pytest.approx(0.1)
    assert float(floored.min()) == pytest.approx(0.1)
    block = torch.zeros(1, 12, 12)
    block[:, 3:9, 3:9] = 1.0
    outward = C.feather(block, 2, 0.0, "outward")[0]
    inward = C.feather(block, 2, 0.0, "inward")[0]
    assert bool((outward[3:9, 3:9] == 1.0).all()) and outward[3, 2].item() > 0
    assert bool((inward[block[0] == 0] == 0).all()) and 0 < inward[3, 3].item() < 1
    assert torch.equal(C.feather(block, 0, 0.0, "both"), block)
    with pytest.raises(Err, match="input 'radius'"):
        C.feather(block, -1)
    with pytest.raises(Err, match="input 'mode'"):
        C.feather(block, 2, 0.0, "sideways")


# -- from an image ---------------------------------------------------------------------------------

def test_channel_map_luma_and_channels(C, Err):
    img = torch.tensor([0.2, 0.4, 0.6, 0.9]).view(1, 1, 1, 4).expand(2, 3, 5, 4).clone()
    before = img.clone()
    assert C.channel_map(img, "luminance (Rec. 709)")[0, 0, 0].item() == pytest.approx(
        0.2126 * 0.2 + 0.7152 * 0.4 + 0.0722 * 0.6, abs=1e-6)
    assert C.channel_map(img, "luminance (Rec. 601)")[0, 0, 0].item() == pytest.approx(
        0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6, abs=1e-6)
    for name, v in (("red", 0.2), ("green", 0.4), ("blue", 0.6), ("alpha", 0.9)):
        out = C.channel_map(img, name)
        _check_map(out, (2, 3, 5))
        assert out[1, 2, 4].item() == pytest.approx(v)
    assert C.channel_map(img, "red", invert=True)[0, 0, 0].item() == pytest.approx(0.8)
    assert torch.equal(img, before)
    grey = torch.full((1, 2, 2, 1), 0.3)
    assert C.channel_map(grey, "luminance (Rec. 601)")[0, 0, 0].item() == pytest.approx(0.3)
    with pytest.raises(Err, match="input 'image' expected an IMAGE with an alpha channel"):
        C.channel_map(img[..., :3], "alpha")
    with pytest.raises(Err, match="input 'channel'"):
        C.channel_map(img, "hue")
    with pytest.raises(Err, match="input 'image' expected finite pixel values"):
        C.channel_map(torch.full((1, 2, 2, 3), float("nan")), "red")


def test_depth_map_near_far_and_clips(C):
    depth = torch.tensor([0.0, 0.25, 0.5, 1.0]).view(1, 1, 4, 1).expand(1, 1, 4, 3).clone()
    assert C.depth_map(depth)[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])
    assert C.depth_map(depth, change="far")[0, 0].tolist() == pytest.approx([1.0, 0.75, 0.5, 0.0])
    clipped = C.depth_map(depth, near_value=0.8, far_value=0.2)[0, 0]
    assert clipped.tolist() == pytest.approx([0.0, 0.05 / 0.6, 0.3 / 0.6, 1.0], abs=1e-6)
    assert C.depth_map(depth, near_value=0.0, far_value=1.0)[0, 0].tolist() == pytest.approx([1.0, 0.75, 0.5, 0.0])
    assert C.depth_map(depth, near_value=0.4, far_value=0.4)[0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert C.depth_map(depth, curve="gamma", gamma=2.0)[0, 0, 2].item() == pytest.approx(0.25)


# -- semantic --------------------------------------------------------------------------------------

def test_semantic_map_formula(C, Err):
    heat = torch.tensor([[[0.0, 0.5, 1.0]]])
    out = C.semantic_map(heat, 0.2, 0.9, 2.0)
    assert out[0, 0].tolist() == pytest.approx([0.2, 0.2 + 0.7 * 0.25, 0.9])
    norm = C.semantic_map(heat * 0.5, 0.0, 1.0, 1.0, normalize=True)
    assert norm[0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert C.semantic_map(torch.zeros(1, 2, 2), 0.3, 1.0, 1.0, normalize=True).unique().tolist() == pytest.approx([0.3])
    reverse = C.semantic_map(heat, 0.9, 0.1, 1.0)
    assert reverse[0, 0].tolist() == pytest.approx([0.9, 0.5, 0.1])
    with pytest.raises(Err, match="input 'ceiling' expected a number in \\[0.0, 1.0\\]"):
        C.semantic_map(heat, 0.0, 1.5, 1.0)
    with pytest.raises(Err, match="input 'heat'"):
        C.semantic_map(torch.ones(2, 3, 4, 5), 0.0, 1.0, 1.0)


# -- operations ------------------------------------------------------------------------------------

def test_combine_every_operation_exact(C):
    a = torch.tensor([[[0.2, 0.6, 0.9]]])
    b = torch.tensor([[[0.5, 0.5, 0.5]]])
    expect = {"min": [0.2, 0.5, 0.5], "max": [0.5, 0.6, 0.9], "multiply": [0.1, 0.3, 0.45],
              "add": [0.7, 1.0, 1.0], "subtract": [0.0, 0.1, 0.4], "screen": [0.6, 0.8, 0.95],
              "lerp": [0.2 * 0.75 + 0.5 * 0.25, 0.6 * 0.75 + 0.125, 0.9 * 0.75 + 0.125]}
    assert set(expect) == set(C.COMBINE_OPS)
    for op, values in expect.items():
        assert C.combine(a, b, op, 0.25)[0, 0].tolist() == pytest.approx(values, abs=1e-6), op


def test_combine_resizes_b_and_broadcasts_batch(C, Err):
    a = torch.zeros(3, 4, 4)
    b = torch.zeros(1, 8, 8)
    b[:, :4, :4] = 1.0                                  # top-left quarter, area-resized to 2x2 of a's grid
    out = C.combine(a, b, "max")
    _check_map(out, (3, 4, 4))
    assert out[2, :2, :2].unique().tolist() == [1.0] and out[2, 2:, 2:].unique().tolist() == [0.0]
    with pytest.raises(Err, match=r"input 'map_b' expected 1 map or 3 maps"):
        C.combine(torch.zeros(3, 4, 4), torch.zeros(2, 4, 4), "min")
    with pytest.raises(Err, match="input 'operation'"):
        C.combine(a, b, "xor")


def test_levels_exact_and_threshold(C):
    m = torch.tensor([[[0.0, 0.2, 0.5, 0.8, 1.0]]])
    out = C.levels(m, 0.2, 0.8, 0.1, 0.9)
    assert out[0, 0].tolist() == pytest.approx([0.1, 0.1, 0.5, 0.9, 0.9])
    g = C.levels(m, 0.0, 1.0, 0.0, 1.0, "gamma", 2.0)
    assert g[0, 0].tolist() == pytest.approx([0.0, 0.04, 0.25, 0.64, 1.0])
    assert C.levels(m, 0.5, 0.5, 0.0, 1.0)[0, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


def test_quantize_gives_exactly_n_levels_on_a_ramp(C, Err):
    ramp = torch.linspace(0, 1, 1001).view(1, 1, -1)
    for n in (2, 3, 5, 17):
        out = C.quantize(ramp, n)
        levels = out.unique()
        assert levels.numel() == n
        assert levels.tolist() == pytest.approx([i / (n - 1) for i in range(n)])
    assert C.quantize(torch.tensor([[[0.125, 0.124, 0.375]]]), 5)[0, 0].tolist() == [0.25, 0.0, 0.5]   # halves round up
    for bad in (1, 0, 2.5, True):
        with pytest.raises(Err, match="input 'levels' expected a whole number of levels >= 2"):
            C.quantize(ramp, bad)


def test_invert_twice_is_identity_and_stabilize_snaps_exactly(C, Err, pack):
    from dde_pack.nodes.core.maps import apply_polarity

    m = torch.rand(2, 5, 5)
    assert torch.allclose(apply_polarity(apply_polarity(m, True), True), m, atol=1e-7)
    x = torch.tensor([[[0.0, 0.019, 0.02, 0.021, 0.5, 0.979, 0.98, 250 / 255, 1.0]]])
    before = x.clone()
    out = C.stabilize(x, 0.02)[0, 0]
    assert out.tolist() == [0.0, 0.0, 0.0, pytest.approx(0.021), 0.5, pytest.approx(0.979), 1.0, 1.0, 1.0]
    assert torch.equal(x, before)
    assert torch.equal(C.stabilize(x, 0.0), x)
    with pytest.raises(Err, match=r"input 'epsilon' expected a number in \[0.0, 0.5\)"):
        C.stabilize(x, 0.5)


def test_nan_and_bad_shapes_name_the_input(C, Err):
    nan = torch.tensor([[[float("nan"), 0.5]]])
    calls = [(lambda: C.quantize(nan, 3), "change_map"),
             (lambda: C.stabilize(nan, 0.1), "change_map"),
             (lambda: C.combine(torch.zeros(1, 1, 2), nan, "min"), "map_b"),
             (lambda: C.feather(nan, 2), "mask"),
             (lambda: C.distance_falloff(nan, 1, 2), "mask"),
             (lambda: C.semantic_map(nan), "heat")]
    for call, name in calls:
        with pytest.raises(Err, match=rf"^input '{name}' expected finite values"):
            call()
    with pytest.raises(Err, match="input 'change_map' expected a MASK of shape"):
        C.quantize(torch.zeros(2, 2, 2, 2), 3)


def test_no_operation_mutates_its_input(C):
    m = torch.rand(2, 6, 6) * 1.4 - 0.2          # out of range too: validation clamps a copy
    before = m.clone()
    C.quantize(m, 3)
    C.stabilize(m, 0.1)
    C.combine(m, m, "add")
    C.feather(m, 2, 0.1, "outward")
    C.distance_falloff(m, 1.0, 3.0)
    C.semantic_map(m, 0.1, 0.9, 2.0, normalize=True)
    C.levels(m, 0.1, 0.9, 0.0, 1.0)
    assert torch.equal(m, before)


# -- properties ------------------------------------------------------------------------------------

_shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))
_in_range = st.floats(0.0, 1.0)
_unit = st.one_of(_in_range, _in_range, _in_range, _in_range, st.floats(-0.5, 1.5),
                  st.sampled_from([float("nan"), float("inf")]))      # mostly valid, sometimes not


@st.composite
def _maps(draw):
    b, h, w = draw(_shapes)
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, h, w, generator=g) * draw(st.floats(0.0, 2.0)) - draw(st.floats(0.0, 0.5))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=_maps(), other=_maps(),
       op=st.sampled_from(["min", "max", "multiply", "add", "subtract", "screen", "lerp", "bad"]),
       factor=_unit, n=st.integers(-1, 9), eps=_unit, lows=st.tuples(_unit, _unit, _unit, _unit),
       curve=st.sampled_from(["linear", "smoothstep", "gamma", "gamma", "ease-in-out", "nope"]),
       gamma=st.one_of(st.floats(0.05, 5.0), st.floats(0.05, 5.0), st.floats(-1.0, 5.0)),
       radius=st.integers(-1, 4), inner=st.floats(-1.0, 6.0), outer=st.floats(-1.0, 8.0))
def test_ops_stay_in_range_or_raise_node_input_error(C, Err, m, other, op, factor, n, eps, lows, curve, gamma,
                                                     radius, inner, outer):
    before = m.clone()
    calls = [lambda: C.combine(m, other, op, factor), lambda: C.quantize(m, n), lambda: C.stabilize(m, eps),
             lambda: C.levels(m, *lows, curve, gamma), lambda: C.feather(m, radius, eps),
             lambda: C.distance_falloff(m, inner, outer, 0.5, curve, gamma),
             lambda: C.semantic_map(m, lows[0], lows[1], gamma, True)]
    for call in calls:
        try:
            out = call()
        except Err:
            continue
        assert out.dtype == torch.float32 and out.ndim == 3
        assert out.shape[-2:] == m.shape[-2:]
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(m, before)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=_shapes, angle=st.floats(-720, 720), offset=st.floats(-1, 1), cx=st.floats(-1, 2), cy=st.floats(-1, 2),
       radii=st.tuples(st.floats(0, 3), st.floats(0, 3)), curve=st.sampled_from(sorted(["linear", "smootherstep",
                                                                                         "gamma", "ease-out"])))
def test_gradients_have_the_canvas_shape_and_stay_in_range(C, size, angle, offset, cx, cy, radii, curve):
    inner, outer = sorted(radii)
    b, h, w = size
    shaped = lambda t: float(C.CURVES[curve](torch.tensor(t, dtype=torch.float64), 0.7))
    a = math.radians(angle)

    def linear(yc, xc):   # the documented formulas, at a pixel centre
        p = (xc - w / 2) * math.cos(a) + (yc - h / 2) * math.sin(a)
        half = (w / 2) * abs(math.cos(a)) + (h / 2) * abs(math.sin(a))
        return shaped(min(max(0.5 + p / (2 * half) - offset, 0.0), 1.0)), False

    def radial(yc, xc):
        d, lo, hi = math.hypot(xc - cx * w, yc - cy * h), inner * min(h, w), outer * min(h, w)
        t = 1.0 - (float(d > lo) if abs(hi - lo) < 1e-6 else min(max((d - lo) / (hi - lo), 0.0), 1.0))
        steep = hi - lo < 0.05 and lo - 1e-3 < d < hi + 1e-3   # on (or next to) a hard edge: rounding picks the side
        return 1.0 - shaped(t), steep

    def angular(yc, xc):
        t = ((math.degrees(math.atan2(yc - cy * h, xc - cx * w)) - angle) % 360.0) / 360.0
        return shaped(1.0 - abs(2.0 * t - 1.0)), False

    for out, formula in ((C.linear_gradient(size, angle, offset, curve, 0.7), linear),
                         (C.radial_gradient(size, cx, cy, inner, outer, curve, 0.7, True), radial),
                         (C.angular_gradient(size, cx, cy, angle, True, curve, 0.7), angular)):
        _check_map(out, size)
        assert torch.equal(out, out[:1].expand_as(out))   # every map of the batch is the same picture
        for y, x in ((0, 0), (h - 1, w - 1), (h // 2, w // 3)):
            expected, edge = formula(y + 0.5, x + 0.5)
            if not edge:
                assert float(out[0, y, x]) == pytest.approx(expected, abs=2e-4), (formula.__name__, y, x)
