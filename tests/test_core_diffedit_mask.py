"""The default DiffEdit mask (the paper's rescale: extreme values removed first) on fixed heats."""

import pytest
import torch


@pytest.fixture(scope="module")
def D(pack):
    from dde_pack.nodes.core import diffedit_math as diffedit

    return diffedit


def outlier_heat():
    """10 x 10 raw differences: background 0.2, a 30-pixel region at 0.6, two low (0.0) and two high (1.4) outliers."""
    d = torch.full((1, 10, 10), 0.2)
    region = torch.zeros(1, 10, 10, dtype=torch.bool)
    region[0, 2:8, 3:8] = True            # 30 pixels
    d[region] = 0.6
    d[0, 4, 4] = d[0, 5, 6] = 1.4         # high outliers inside the region
    d[0, 0, 0] = d[0, 9, 9] = 0.0         # low outliers in the background
    return d, region


def test_default_mask_clips_eight_percent_each_side_then_cuts_at_half(D):
    d, region = outlier_heat()
    heat, mask = D.heat_and_mask(d, (10, 10))               # every default: rescale, threshold 0.5
    assert D.OUTLIER_QUANTILE == 0.92 and D.CLIP_FLOOR == 0.5
    lo, q = D.clip_range(d, D.OUTLIER_QUANTILE)              # k = floor(0.08 * 100) = 8 per side
    assert float(lo) == pytest.approx(0.2) and float(q) == pytest.approx(0.6)
    # hi = max(0.6, 0.2 + 0.5 * (1.4 - 0.2)) = 0.8: the region's heat is (0.6 - 0.2) / 0.6 = 2/3
    assert torch.equal(mask[0].bool(), region[0])            # the whole region, outliers included, nothing else
    expected = torch.where(region[0], torch.tensor(2 / 3), torch.tensor(0.0))
    expected[4, 4] = expected[5, 6] = 1.0
    assert torch.allclose(heat[0], expected, atol=1e-6)
    stats = D.mask_stats(heat, mask)
    assert float(stats["area"][0]) == pytest.approx(0.30)
    assert "mask 30.0%" in D.stats_text(stats)


def test_a_region_smaller_than_the_clipped_share_stays_whole(D):
    d = torch.full((1, 20, 20), 0.1)
    d[0, 5:7, 5:9] = 1.0                                     # 8 pixels = 2 % of the picture, under the 8 % clipped
    heat, mask = D.heat_and_mask(d, (20, 20))
    assert torch.equal(mask, (d > 0.5).float()) and torch.equal(heat, (d > 0.5).float())


def test_minmax_keeps_the_old_rescale_where_outliers_shrink_the_mask(D):
    d, region = outlier_heat()
    heat, mask = D.heat_and_mask(d, (10, 10), "minmax")
    assert int(mask.sum()) == 2 and float(mask[0, 4, 4]) == 1.0 and float(mask[0, 5, 6]) == 1.0
    assert float(heat[0, 3, 3]) == pytest.approx(0.6 / 1.4)  # the region squeezed below the cut by two pixels


def test_small_pictures_have_nothing_to_clip(D):
    d = torch.tensor([[[0.0, 1.0], [3.0, 4.0]]])             # 4 pixels: k = 0, rescale = minmax
    for method in ("rescale", "minmax"):
        heat, mask = D.heat_and_mask(d, (2, 2), method)
        assert heat.tolist() == [[[0.0, 0.25], [0.75, 1.0]]] and mask.tolist() == [[[0.0, 0.0], [1.0, 1.0]]]


def test_rescale_is_per_image_and_constant_heat_gives_zero(D):
    d, region = outlier_heat()
    both = torch.cat([d, torch.ones(1, 10, 10)])
    heat, mask = D.heat_and_mask(both, (10, 10))
    assert torch.equal(mask[0].bool(), region[0]) and float(heat[1].abs().max()) == 0.0 and float(mask[1].sum()) == 0.0


def test_clamp_is_diffusers_rule_divide_by_the_cap_and_keep_what_is_strictly_above(D):
    """diffusers' generate_mask: ``clamp(d, 0, ratio * mean) / (ratio * mean) > 0.5`` (not a division by the max)."""
    d = torch.tensor([[[0.0, 0.0], [1.5, 2.5]]])               # mean 1, cap 3: heat 0, 0, 0.5, 5/6
    heat, mask = D.heat_and_mask(d, (2, 2), "clamp")
    assert torch.allclose(heat, torch.tensor([[[0.0, 0.0], [0.5, 2.5 / 3]]]), atol=1e-7)
    assert mask.tolist() == [[[0.0, 0.0], [0.0, 1.0]]]          # 0.5 is not above the cut
    flat = torch.full((1, 10, 10), 0.2)                         # max / mean = 1.26 < 3: the cap is never reached
    flat[0, :3] = 0.3
    heat, mask = D.heat_and_mask(flat, (10, 10), "clamp")
    assert float(heat.max()) == pytest.approx(0.3 / (3 * 0.23)) and float(mask.sum()) == 0.0   # the old rule: all in
    capped = D.heat_and_mask(torch.tensor([[[0.0, 0.0, 0.0, 8.0]]]), (1, 4), "clamp")     # mean 2, cap 6: 8 -> 1
    assert capped[0].tolist() == [[[0.0, 0.0, 0.0, 1.0]]] and capped[1].tolist() == [[[0.0, 0.0, 0.0, 1.0]]]
    assert float(D.heat_and_mask(torch.zeros(1, 3, 3), (3, 3), "clamp")[0].abs().max()) == 0.0


@pytest.mark.parametrize("method", ["rescale", "minmax", "clamp", "otsu"])
def test_differences_above_one_are_resampled_not_clamped(D, method):
    """A 0.6 ring beside a 2.4 core: the ring stays out of the mask at the latent grid and at 8x the size (clamping
    the enlarged differences to 1 read it as 0.6 of the maximum there, inside the mask at 0.5)."""
    d = torch.zeros(1, 12, 12)
    d[0, 2:10, 2:10] = 0.6                                      # a ring two cells wide ...
    d[0, 4:8, 4:8] = 2.4                                        # ... around a core
    ring = torch.zeros(1, 12, 12)
    ring[0, 2:10, 2:10] = 1.0
    ring[0, 4:8, 4:8] = 0.0
    small = D.heat_and_mask(d, (12, 12), method, ratio=4.0)     # clamp: cap 1.6 (a ratio of 3 puts the ring on the cut)
    big = D.heat_and_mask(d, (96, 96), method, ratio=4.0)
    enlarged = torch.nn.functional.interpolate(ring.unsqueeze(1), size=(96, 96), mode="bilinear", align_corners=False)
    pure_ring = enlarged[0, 0] == 1.0                           # picture pixels interpolated from ring cells only
    assert int(pure_ring.sum()) > 500
    assert torch.equal(big[1][0, 4::8, 4::8], small[1][0])      # the same mask at each cell's centre
    assert float(small[1][0][ring[0].bool()].max()) == 0.0 and float(big[1][0][pure_ring].max()) == 0.0
    assert float(big[1][0, 44:52, 44:52].min()) == 1.0          # the core's middle is in
    if method == "minmax":
        assert float(small[0][0, 2, 2]) == pytest.approx(0.25) and float(big[0][0][pure_ring].max()) == pytest.approx(0.25)
