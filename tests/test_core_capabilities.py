"""The pure maths of the editing capabilities: change map from an edit, A1111 adaptive composite, fractional
start positions, pre-fill. Exact values, ground truth, errors, inputs never modified."""

import pytest
import torch

from dde_world.edits import synthetic_edit


@pytest.fixture(scope="module")
def core(pack):
    from dde_pack.nodes.core import edits, errors, pixels, prefill, schedule

    return type("Core", (), {"edits": edits, "pixels": pixels, "prefill": prefill, "schedule": schedule,
                             "Err": errors.InputError})


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


# -- change map from a before/after pair --------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("match", ["affine", "mean/std"])
def test_change_map_finds_the_edited_region_despite_a_global_shift_and_noise(core, seed, match):
    before, after, region = synthetic_edit(seed)
    b0, a0 = before.clone(), after.clone()
    cmap, mask = core.edits.change_map_from_edit(before, after, match)
    assert torch.equal(before, b0) and torch.equal(after, a0)
    assert cmap.shape == mask.shape == (1, 96, 96) and cmap.dtype == torch.float32
    assert iou(mask[0] > 0.5, region) >= 0.9
    assert float(cmap[0][~region].max()) <= 0.05
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_without_colour_match_the_global_shift_reads_as_change(core):
    before, after, region = synthetic_edit(0)
    cmap, _ = core.edits.change_map_from_edit(before, after, "none")
    assert float(cmap[0][~region].mean()) > 0.2   # the match is what makes the result above possible


def test_colour_match_recovers_the_editors_gain_and_offset(core):
    before, after, region = synthetic_edit(0, noise=0.0)
    b = before.permute(0, 3, 1, 2)
    a = after.permute(0, 3, 1, 2)
    matched = core.edits.match_colours(b, a, "affine")
    inside = region.view(1, 1, 96, 96).expand_as(b)
    # where nothing clipped, the fitted map undoes the shift to float precision
    assert (matched - b)[~inside].abs().max() < 1e-3


def test_softness_never_reaches_farther_than_its_radius_and_grow_dilates(core):
    before, after, region = synthetic_edit(0)
    hard, _ = core.edits.change_map_from_edit(before, after, softness=0)
    soft, mask = core.edits.change_map_from_edit(before, after, softness=5)
    near = torch.nn.functional.max_pool2d((hard > 0).float().unsqueeze(1), 11, 1, 5)[0, 0] > 0
    assert float(soft[0][~near].max()) == 0.0
    assert (soft[0][near] > 0).any() and float(soft[0][~region].max()) > 0.05
    grown, gmask = core.edits.change_map_from_edit(before, after, grow=3)
    assert gmask.sum() > mask.sum()
    dil = torch.nn.functional.max_pool2d(mask.unsqueeze(1), 7, 1, 3)[:, 0]
    assert torch.equal(gmask, dil)
    _, smask = core.edits.change_map_from_edit(before, after, grow=-3)
    ero = -torch.nn.functional.max_pool2d(-mask.unsqueeze(1), 7, 1, 3)[:, 0]
    assert torch.equal(smask[:, 3:-3, 3:-3], ero[:, 3:-3, 3:-3])


def test_after_of_another_size_is_resized_and_batches_broadcast(core):
    before, after, region = synthetic_edit(0)
    big = torch.nn.functional.interpolate(after.permute(0, 3, 1, 2), size=(144, 144), mode="bilinear",
                                          antialias=True).permute(0, 2, 3, 1)
    cmap, mask = core.edits.change_map_from_edit(before.repeat(2, 1, 1, 1), big)
    assert cmap.shape == (2, 96, 96)
    assert iou(mask[1] > 0.5, region) >= 0.9


@pytest.mark.parametrize("kwargs,name", [({"match": "hist"}, "color_match"), ({"noise_floor": -1.0}, "noise_floor"),
                                         ({"noise_floor": 9.0, "full_change": 3.0}, "full_change"),
                                         ({"grow": 1.5}, "grow"), ({"softness": -2}, "softness")])
def test_change_map_from_edit_bad_input_names_the_input(core, kwargs, name):
    before, after, _ = synthetic_edit(0)
    with pytest.raises(core.Err) as e:
        core.edits.change_map_from_edit(before, after, **kwargs)
    assert e.value.input_name == name and str(e.value).startswith(f"input '{name}'")
    with pytest.raises(core.Err) as e:
        core.edits.change_map_from_edit(before, torch.rand(1, 96, 96, 2))
    assert e.value.input_name == "after"


# -- A1111 adaptive composite -----------------------------------------------------------------------------

def _pair():
    g = torch.Generator().manual_seed(0)
    orig = torch.rand(2, 32, 32, 3, generator=g)
    step = torch.linspace(0, 0.3, 32).view(1, 1, 32, 1)   # edit difference grows along x
    edit = (orig + step * torch.tensor([1.0, -1.0, 1.0]) / 3 ** 0.5)
    cmap = torch.full((1, 32, 32), 0.8)
    cmap[:, :4] = 0.0
    return orig, edit, cmap


def test_threshold_zero_is_todays_composite_bit_exact(core):
    orig, edit, cmap = _pair()
    for blend, feather in (("map", 0), ("changed", 3)):
        today = core.pixels.composite(orig, edit, cmap, blend, feather)
        assert torch.equal(core.pixels.composite(orig, edit, cmap, blend, feather, 0.0, 5.0, 1.0), today)


@pytest.mark.parametrize("influence", [0.0, 0.5])
def test_below_the_threshold_the_original_exactly_above_it_the_map_blend(core, influence):
    orig, edit, cmap = _pair()
    d = (edit - orig).norm(dim=-1)
    t = 0.1
    out = core.pixels.composite(orig, edit, cmap, "map", 0, t, 2.0, influence)
    s = 0.5 * (1 - influence) + (1 - 0.8 ** 0.25) * influence
    teff = t * s / (1 - s)
    below = d <= teff
    assert below.any() and (~below).any()
    assert torch.equal(out[below], orig[below])
    plain = core.pixels.composite(orig, edit, cmap, "map", 0)
    above = ~below
    w = core.pixels.adaptive_weights(d, cmap.expand(2, 32, 32), t, 2.0, influence)
    mw = (cmap.expand(2, 32, 32) * w).unsqueeze(-1)
    expected = orig * (1 - mw) + edit * mw
    assert torch.allclose(out[above], expected[above], atol=1e-6)
    # the blend rises continuously from 0 at the threshold, is half at twice it and tends to the map blend
    dd = torch.tensor([teff, teff * 1.0001, 2 * teff, 1000 * teff])
    ww = core.pixels.adaptive_weights(dd, torch.full((4,), 0.8), t, 2.0, influence)
    assert ww[0] == 0 and ww[1] < 1e-3 and abs(float(ww[2]) - 0.5) < 1e-6 and ww[3] > 0.999
    far = d > 20 * teff
    assert torch.allclose(out[far], plain[far], atol=2e-3)


def test_mask_influence_follows_a1111(core):
    d = torch.full((3,), 0.3)
    m = torch.tensor([0.0, 0.5, 1.0])
    w = core.pixels.adaptive_weights(d, m, 0.2, 2.0, 1.0)
    assert w[0] == 0.0 and 0 < w[1] < 1 and abs(float(w[2]) - 1.0) < 1e-6   # map 1 never snaps back


@pytest.mark.parametrize("name,args", [("difference_threshold", (-0.1, 2.0, 0.0)),
                                       ("difference_contrast", (0.1, float("nan"), 0.0)),
                                       ("mask_influence", (0.1, 2.0, 1.5))])
def test_composite_bad_adaptive_inputs_name_the_input(core, name, args):
    orig, edit, cmap = _pair()
    with pytest.raises(core.Err) as e:
        core.pixels.composite(orig, edit, cmap, "map", 0, *args)
    assert e.value.input_name == name


# -- fractional start positions -----------------------------------------------------------------------------

def test_fractional_start_step_mode_values(core):
    S = core.schedule
    g = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.5, 0.6, 0.74, 0.75, 1.0])
    k = S.start_steps_step(g, 4)
    c = S.fractional_start(g, k, S.step_thresholds(4))
    expected = torch.tensor([float("inf"), 4 - 0.4, 3.0, 3 - 0.2, 2.0, 2 - 0.4, 2 - 0.96, 1.0, 0.0])   # c = N (1 - g)
    assert torch.equal(torch.isinf(c), torch.isinf(expected))
    assert torch.allclose(c[1:], expected[1:], atol=1e-6)
    for i in range(4):   # the step before a pixel's start step runs at its fraction; exact 0/1 elsewhere
        m = S.step_mask(c, g, torch.tensor([i]), 4, fractional=True)
        assert torch.allclose(m, (i + 1 - c).clamp(0, 1).nan_to_num(0.0))
    # exact boundaries: the same masks as step mode
    gb = torch.tensor([0.25, 0.5, 0.75, 1.0, 0.0])
    kb = S.start_steps_step(gb, 4)
    cb = S.fractional_start(gb, kb, S.step_thresholds(4))
    for i in range(4):
        assert torch.equal(S.step_mask(cb, gb, torch.tensor([i]), 4, fractional=True),
                           S.step_mask(kb, gb, torch.tensor([i]), 4))


def test_bisection_finds_the_step_and_threshold_boundaries(core):
    S = core.schedule
    theta = S.thresholds_by_bisection(lambda g: S.start_steps_step(g, 5), 5)
    assert torch.allclose(theta, S.step_thresholds(5), atol=2e-4)   # step mode's slack: within 1e-4
    t = torch.tensor([0.9, 0.7, 0.7, 0.3, 0.05], dtype=torch.float64)
    theta = S.thresholds_by_bisection(lambda g: S.start_steps_thresholds(g, t), 5)
    assert torch.allclose(theta, t, atol=1e-9)
    never = S.thresholds_by_bisection(lambda g: torch.full_like(g, float("inf"), dtype=torch.float32), 3)
    assert torch.isinf(never).all()


def test_fractional_mask_reads_nothing_back_to_the_host(core):
    from dde_world.probes import host_reads

    S = core.schedule
    g = torch.rand(2, 1, 8, 8)
    run = S.DifferentialRun(start=S.fractional_start(g, S.start_steps_step(g, 4), S.step_thresholds(4)),
                            strength_map=g, sigmas=torch.linspace(4, 0, 5), n_steps=4, fractional=True)
    ops, reads = host_reads(lambda: run.mask(torch.tensor([2.0, 2.0])))
    assert ops and reads == []


# -- pre-fill ------------------------------------------------------------------------------------------------

def test_prefill_touches_only_pixels_above_the_level(core):
    P = core.prefill
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(2, 4, 16, 16, generator=g)
    lat0 = lat.clone()
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:10, 5:12] = 0.8
    m[..., 12:, :] = 0.3
    noise, nothing = torch.randn(lat.shape, generator=g), torch.zeros_like(lat)
    assert P.prefill(lat, m, 0.5, "original") is lat
    for method in ("fill", "latent noise", "latent nothing"):
        out = P.prefill(lat, m, 0.5, method, noise, nothing)
        assert torch.equal(lat, lat0)
        keep = (m <= 0.5).expand_as(lat)
        assert torch.equal(out[keep], lat[keep])
        assert not torch.equal(out[~keep], lat[~keep])
    assert torch.equal(P.prefill(lat, m, 0.5, "latent noise", noise, nothing)[~keep], noise[~keep])


def test_fill_takes_its_colour_from_the_surroundings(core):
    P = core.prefill
    lat = torch.zeros(1, 2, 16, 16)
    lat[:, 0] = torch.linspace(-1, 1, 16).view(1, 16)         # a horizontal ramp
    lat[:, 1] = 0.5
    region = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    region[..., 5:11, 5:11] = True
    poked = lat.clone()
    poked[:, :, 5:11, 5:11] = 9.0                             # a strong object there
    out = P.fill_from_surroundings(poked, region)
    assert torch.allclose(out[:, 1][region[:, 0]], torch.full((36,), 0.5), atol=1e-5)   # flat stays flat
    inside = out[:, 0, 5:11, 5:11]
    assert inside.min() >= -1 and inside.max() <= 1                                      # no trace of 9
    assert inside[..., -1].mean() > inside[..., 0].mean() + 0.3                                  # the ramp carries on
    video = P.fill_from_surroundings(poked.unsqueeze(2).repeat(1, 1, 3, 1, 1), region.unsqueeze(2))
    assert torch.allclose(video[:, :, 1], out, atol=1e-6)
