"""Change-map validation, polarity, resizing and batch matching."""

import pytest
import torch


@pytest.fixture(scope="module")
def M(pack):
    from dde_pack.nodes.core import maps

    return maps


def test_as_maps_shapes_clamp_and_errors(M, pack):
    from dde_pack.nodes.core.errors import InputError

    assert M.as_maps(torch.ones(4, 5), "m").shape == (1, 4, 5)
    assert M.as_maps(torch.ones(2, 1, 4, 5), "m").shape == (2, 4, 5)
    assert M.as_maps(torch.tensor([[-1.0, 2.0]]), "m").tolist() == [[[0.0, 1.0]]]
    with pytest.raises(InputError, match=r"input 'm' expected finite values in 0..1, got 1 NaN"):
        M.as_maps(torch.tensor([[float("nan"), 0.5]]), "m")
    with pytest.raises(InputError, match="shape"):
        M.as_maps(torch.ones(2, 3, 4, 5), "m")
    with pytest.raises(InputError):
        M.as_maps("white", "m")


def test_input_is_never_mutated(M):
    x = torch.tensor([[[1.5, -0.5]]])
    before = x.clone()
    M.apply_polarity(M.as_maps(x, "m"), True)
    assert torch.equal(x, before)


def test_resize_is_area_average_when_shrinking(M):
    m = torch.zeros(1, 16, 16)
    m[0, :8, :4] = 1.0      # half of the top-left 8x8 cell
    out = M.resize_maps(m, (2, 2))
    assert out[0].tolist() == [[0.5, 0.0], [0.0, 0.0]]
    up = M.resize_maps(torch.tensor([[[0.0, 1.0]]]), (1, 4))
    assert up[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.0])


def test_batch_rules(M, pack):
    from dde_pack.nodes.core.errors import InputError

    one = torch.rand(1, 8, 8)
    assert M.match_batch(one, 3, "m").shape == (3, 8, 8)
    with pytest.raises(InputError, match="1 map or 3 maps"):
        M.match_batch(torch.rand(2, 8, 8), 3, "m")


def test_maps_for_video_latent(M, pack):
    from dde_pack.nodes.core.errors import InputError

    per_frame = torch.stack([torch.full((16, 16), float(i) / 4) for i in range(5)])
    out = M.maps_for_latent(per_frame, (2, 16, 5, 2, 2), "m")
    assert out.shape == (2, 1, 5, 2, 2)
    assert out[1, 0, :, 0, 0].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(InputError, match="one per latent frame"):
        M.maps_for_latent(torch.rand(3, 16, 16), (2, 16, 5, 2, 2), "m")
