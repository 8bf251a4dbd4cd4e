"""Several edits at once, the pure part: the overlap rule, the change map, the weights of regional conditioning."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def R(pack):
    from dde_pack.nodes.core import regions

    return regions


def brute_force_regions(heats, masks):
    """The documented rule pixel by pixel: among the concepts whose mask covers a pixel, the largest heat; ties to the first."""
    k, b, h, w = heats.shape
    out = torch.zeros_like(heats)
    for n, y, x in itertools.product(range(b), range(h), range(w)):
        best = None
        for i in range(k):
            if masks[i, n, y, x] > 0 and (best is None or heats[i, n, y, x] > heats[best, n, y, x]):
                best = i
        if best is not None:
            out[best, n, y, x] = 1.0
    return out


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), b=st.integers(1, 2), seed=st.integers(0, 2 ** 31 - 1), levels=st.sampled_from([3, 1000]))
def test_overlaps_go_to_the_larger_heat_and_ties_to_the_earlier_concept(R, k, b, seed, levels):
    gen = torch.Generator().manual_seed(seed)
    heats = torch.randint(0, levels, (k, b, 5, 6), generator=gen).float() / (levels - 1)   # 3 levels: many ties
    masks = (torch.rand(k, b, 5, 6, generator=gen) > 0.4).float()
    owned = R.regions(heats, masks)
    assert torch.equal(owned, brute_force_regions(heats, masks))
    assert owned.sum(0).max() <= 1                                  # disjoint
    assert torch.equal(owned.amax(0), masks.amax(0))                # their union is the union of the masks
    assert torch.equal(owned * masks, owned)                        # a concept edits only inside its own mask


def test_a_tie_goes_to_the_first_concept_and_an_uncovered_pixel_to_none(R):
    heats = torch.tensor([0.7, 0.7, 0.9]).view(3, 1, 1, 1)
    masks = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1, 1)          # the hottest concept does not cover it
    assert R.regions(heats, masks).flatten().tolist() == [1.0, 0.0, 0.0]
    assert R.regions(heats, torch.zeros_like(masks)).sum() == 0


def test_change_map_is_each_strength_inside_its_region_and_zero_elsewhere(R):
    owned = torch.zeros(2, 1, 4, 4)
    owned[0, :, :2] = 1.0
    owned[1, :, 3:, 1:] = 1.0
    cmap = R.change_map(owned, [1.0, 0.35])
    assert torch.equal(cmap[0, :2], torch.ones(2, 4))
    assert torch.equal(cmap[0, 3, 1:], torch.full((3,), 0.35))
    assert cmap[0, 2].sum() == 0 and cmap[0, 3, 0] == 0
    from dde_pack.nodes.core.errors import InputError

    with pytest.raises(InputError, match="one strength per concept"):
        R.change_map(owned, [1.0])


def test_regional_weights_add_up_to_one_a_touched_cell_is_the_concepts_an_untouched_one_the_bases(R):
    gen = torch.Generator().manual_seed(0)
    heats = torch.rand(3, 2, 64, 48, generator=gen)
    masks = (torch.rand(3, 2, 64, 48, generator=gen) > 0.8).float()
    masks[:, :, :16] = 0.0            # two rows of cells no mask touches
    masks[:, :, 16:24] = 0.0
    masks[0, :, 16:24] = (torch.arange(48) % 8 < 3).float()   # a row of cells only concept 1 touches, 3 of 8 columns of each
    owned = R.regions(heats, masks)
    weights, rest = R.regional_weights(owned, (8, 6))
    assert weights.shape == (3, 2, 8, 6) and rest.shape == (2, 8, 6)
    assert (weights.sum(0) + rest - 1).abs().max() <= 1e-6
    area = owned.reshape(3, 2, 8, 8, 6, 8).mean(dim=(3, 5))     # the area each region covers in each cell
    touched = area.sum(0) > 0
    assert torch.equal(rest, (~touched).float())                 # the base: exactly 1 where nothing, 0 where anything
    assert torch.equal(rest[:, :2], torch.ones(2, 2, 6))
    assert torch.equal(weights[0, :, 2], torch.ones(2, 6)) and weights[1:, :, 2].sum() == 0   # partly covered: all 1's
    shared = touched & (area > 0).sum(0).gt(1)                   # cells two or three concepts touch: by area
    assert bool(shared.any())
    expected = area / area.sum(0).clamp(min=1e-30)
    assert torch.allclose(weights[:, shared], expected[:, shared], atol=1e-6)


def test_regions_of_heats_and_masks_of_other_shapes_are_an_error(R):
    from dde_pack.nodes.core.errors import InputError

    with pytest.raises(InputError, match="k heats and k masks of one shape"):
        R.regions(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 4, 4))
