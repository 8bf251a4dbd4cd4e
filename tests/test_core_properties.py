"""Property-based tests of the pure core: random shapes, dtypes and values never raise anything but
InputError, and every output stays in its documented range."""

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.bool, torch.int64]


@pytest.fixture(scope="module")
def core(pack):
    from dde_pack.nodes.core import diffedit_math as diffedit
    from dde_pack.nodes.core import errors, maps, pixels, schedule, visual

    class Core:
        pass

    c = Core()
    c.diffedit, c.errors, c.maps, c.pixels, c.schedule, c.visual = diffedit, errors, maps, pixels, schedule, visual
    return c


@st.composite
def tensors(draw, min_dims=1, max_dims=5, max_side=12):
    ndim = draw(st.integers(min_dims, max_dims))
    shape = draw(st.lists(st.integers(0, max_side), min_size=ndim, max_size=ndim))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["unit", "wide", "nan", "inf", "const"]))
    seed = draw(st.integers(0, 2 ** 16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    if kind == "wide":
        x = (x - 0.5) * 40
    elif kind == "nan" and x.numel():
        x.view(-1)[0] = math.nan
    elif kind == "inf" and x.numel():
        x.view(-1)[-1] = math.inf
    elif kind == "const":
        x = torch.full(shape, draw(st.sampled_from([0.0, 1.0, 0.5])), dtype=torch.float64)
    if dtype == torch.bool:
        return x > 0.5
    if dtype == torch.int64:
        return x.nan_to_num(0, 0, 0).round().to(torch.int64)
    return x.to(dtype)


def _is_a_map(x: torch.Tensor) -> bool:
    """What ``as_maps`` promises to accept: (H,W), (B,H,W) or (B,1,H,W), not empty, bool or float, finite."""
    shape_ok = x.ndim in (2, 3) or (x.ndim == 4 and x.shape[1] == 1)
    kind_ok = x.dtype == torch.bool or x.is_floating_point()
    return shape_ok and x.numel() > 0 and kind_ok and bool(torch.isfinite(x.to(torch.float64)).all())


@SETTINGS
@given(x=tensors())
def test_as_maps_accepts_every_map_and_names_the_input_otherwise(core, x):
    if not _is_a_map(x):
        with pytest.raises(core.errors.InputError, match="^input 'map' expected"):
            core.maps.as_maps(x, "map")
        return
    m = core.maps.as_maps(x, "map")
    expected = x.to(torch.float32).clamp(0.0, 1.0).reshape(-1, *x.shape[-2:])
    assert m.dtype == torch.float32 and torch.equal(m, expected)


@SETTINGS
@given(x=tensors(min_dims=3, max_dims=3), h=st.integers(1, 40), w=st.integers(1, 40))
def test_resize_keeps_range_and_shape(core, x, h, w):
    assume(_is_a_map(x))
    m = core.maps.as_maps(x, "m")
    out = core.maps.resize_maps(m, (h, w))
    assert out.shape == (m.shape[0], h, w)
    assert float(out.min()) >= float(m.min()) - 1e-6 and float(out.max()) <= float(m.max()) + 1e-6   # a resample never leaves the map's range
    if (h, w) == tuple(m.shape[1:]):
        assert torch.equal(out, m)


@SETTINGS
@given(n=st.integers(1, 7), shape=st.lists(st.integers(1, 6), min_size=4, max_size=5))
def test_maps_for_latent_shape_or_error(core, n, shape):
    maps = torch.rand(n, 9, 7)
    try:
        out = core.maps.maps_for_latent(maps, shape, "change_map")
    except core.errors.InputError as e:
        assert str(e).startswith("input '")
        return
    assert out.shape[0] == shape[0] and out.shape[1] == 1 and tuple(out.shape[2:]) == tuple(shape[2:])


@SETTINGS
@given(x=tensors(min_dims=1, max_dims=3), n=st.integers(0, 60))
def test_start_steps_are_steps_or_never_and_monotone(core, x, n):
    try:
        g = core.maps.as_maps(x if x.ndim >= 2 else x.reshape(1, -1), "m")
    except core.errors.InputError:
        return
    sigmas = [float(n - i) for i in range(n + 1)]
    for k in (core.schedule.start_steps_step(g, n),
              core.schedule.start_steps_thresholds(g, torch.linspace(1, 0, n)),
              core.schedule.start_steps_denoise(g, sigmas, lambda m: float(n) * n / m if m else 0.0)):
        finite = torch.isfinite(k)
        assert bool(((k[finite] >= 0) & (k[finite] < n) & (k[finite] == k[finite].round())).all())
        assert bool((~finite[g <= 0]).all())                 # strength 0 never changes
        order = torch.argsort(g.flatten())
        ks = k.flatten()[order]
        ks = torch.where(torch.isfinite(ks), ks, torch.full_like(ks, 1e9))
        assert bool((ks[1:] <= ks[:-1]).all())                # more strength never starts later


@SETTINGS
@given(x=tensors(min_dims=3, max_dims=3, max_side=8), idx=st.integers(0, 30), softness=st.floats(0, 1),
       strength=st.floats(0, 1), dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
def test_step_mask_in_range(core, x, idx, softness, strength, dtype):
    try:
        g = core.maps.as_maps(x, "m").unsqueeze(1)
    except core.errors.InputError:
        return
    run = core.schedule.DifferentialRun(start=core.schedule.start_steps_step(g, 20), strength_map=g,
                                        sigmas=torch.linspace(20, 0, 21), n_steps=20, softness=softness, strength=strength)
    m = run.mask(torch.full((g.shape[0],), float(max(20 - idx, 0))), dtype)
    assert m.dtype == dtype and m.shape == g.shape
    assert float(m.float().min()) >= 0.0 and float(m.float().max()) <= 1.0
    assert bool((m.float()[g == 0] == 0).all())


@SETTINGS
@given(b=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), out=st.integers(1, 40),
       method=st.sampled_from(["rescale", "clamp", "otsu", "percentile"]), smooth=st.floats(0, 4),
       grow=st.integers(-3, 3), const=st.booleans())
def test_heat_and_mask_ranges(core, b, h, w, out, method, smooth, grow, const):
    diff = torch.ones(b, h, w) if const else torch.rand(b, h, w) ** 3
    heat, mask = core.diffedit.heat_and_mask(diff, (out, out + 1), method, 0.5, 3.0, 0.8, smooth, grow)
    assert heat.shape == mask.shape == (b, out, out + 1)
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}


@SETTINGS
@given(o=tensors(min_dims=4, max_dims=4, max_side=6), feather=st.integers(0, 4), blend=st.sampled_from(["map", "changed", "x"]))
def test_composite_range_and_exact_keep(core, o, feather, blend):
    edit = torch.rand(o.shape) if o.numel() else o
    maps = torch.rand(1, 3, 3)
    maps[:, :, 0] = 0.0      # a kept column: whatever the feather, those pixels are the original's
    try:
        out = core.pixels.composite(o, edit, maps, blend, feather)
    except core.errors.InputError as e:
        assert str(e).startswith("input '")
        return
    assert out.shape[1:] == o.shape[1:]
    assert bool(torch.isfinite(out).all())
    kept = (core.maps.resize_maps(maps, o.shape[1:3]) == 0).unsqueeze(-1).expand(out.shape)
    original = o.to(torch.float32).expand(out.shape)
    assert bool(kept.any()) or o.shape[2] < 3    # from 3 columns up, the first one stays 0
    assert torch.equal(out[kept], original[kept])
    lo = torch.minimum(original, edit.to(torch.float32).expand(out.shape))
    hi = torch.maximum(original, edit.to(torch.float32).expand(out.shape))
    assert bool(((out >= lo - 1e-6) & (out <= hi + 1e-6)).all())   # a blend never leaves the two pictures' range


@SETTINGS
@given(text=st.text(max_size=40))
def test_parse_strengths(core, text):
    try:
        values = core.visual.parse_strengths(text)
    except core.errors.InputError as e:
        assert str(e).startswith("input 'strengths'")
        return
    assert 1 <= len(values) <= 64 and all(0 <= v <= 1 for v in values)
