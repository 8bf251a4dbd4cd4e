"""The facts behind the node messages (pure core): stretched maps, empty or full masks, rendered strengths."""

import pytest
import torch


@pytest.fixture(scope="module")
def N(pack):
    from dde_pack.nodes.core import facts

    return facts


def ramp(h, w):
    return torch.linspace(0, 1, w).expand(1, h, w).contiguous()


def test_aspect_mismatch_in_latent_cells(N):
    assert N.aspect_mismatch(ramp(64, 64), (8, 8)) is None               # same aspect
    assert N.aspect_mismatch(ramp(516, 772), (64, 96)) is None           # a picture rounded to the latent grid
    found = N.aspect_mismatch(ramp(64, 32), (32, 32))                    # a tall map on a square latent
    assert (found.map_size, found.latent_size, found.cells) == ((64, 32), (32, 32), 32.0)
    assert N.aspect_mismatch(torch.full((1, 64, 32), 0.3), (32, 32)) is None   # uniform: stretching changes nothing
    assert N.aspect_mismatch(ramp(64, 60), (8, 8)) is None               # 8 x 64 / 60 - 8 = 0.53 cells: within one cell
    assert N.aspect_mismatch(ramp(64, 48), (8, 8)).cells == pytest.approx(8 * 64 / 48 - 8)   # 2.67 cells


def test_mask_coverage_names_the_empty_and_full_images(N):
    masks = torch.stack([torch.zeros(4, 4), torch.ones(4, 4), torch.eye(4)])
    assert N.mask_coverage(masks) == N.Coverage(empty=[0], full=[1], batch=3)
    assert N.mask_coverage(torch.eye(4).unsqueeze(0)) is None


def test_render_levels_counts_free_steps_and_collapsed_greys(N):
    g = torch.tensor([0.0, 0.1, 0.4, 0.6, 0.9, 1.0])
    one = N.render_levels(g, torch.floor(g * 1), 1)   # step mode, 1 step: floor(g N) free steps
    assert (one.possible, one.rendered, one.grey, one.to_keep, one.to_full, one.collapsed) == (2, 2, 4, 4, 0, True)
    ten = N.render_levels(g, torch.floor(g * 10), 10)
    assert (ten.possible, ten.rendered, ten.to_keep, ten.to_full, ten.collapsed) == (11, 6, 0, 0, False)
    assert N.has_grey(g) and not N.has_grey(torch.tensor([0.0, 1.0]))
