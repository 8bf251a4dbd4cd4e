"""DiffEdit for video latents: temporal smoothing and per-frame heat / masks (pure torch)."""

import math

import pytest
import torch


@pytest.fixture(scope="module")
def D(pack):
    from dde_pack.nodes.core import diffedit_math as diffedit

    return diffedit


def test_smooth_frames_is_a_normalised_gaussian_with_replicated_ends(D):
    d = torch.zeros(1, 5, 2, 3)
    d[0, 2] = 1.0                                   # an impulse on the middle frame
    out = D.smooth_frames(d, 2)                     # kernel 5, sigma 1
    w = torch.tensor([math.exp(-0.5 * x * x) for x in (-2, -1, 0, 1, 2)])
    w = w / w.sum()
    assert torch.allclose(out[0, :, 0, 0], w, atol=1e-7)
    const = torch.full((2, 4, 3, 3), 0.7)
    assert torch.allclose(D.smooth_frames(const, 3), const, atol=1e-6)   # replicate border keeps a constant
    assert torch.equal(D.smooth_frames(d, 0), d)
    assert torch.equal(D.smooth_frames(d[:, :1], 4), d[:, :1])


def test_one_frame_video_is_the_image_heat_and_mask(D):
    diff = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    for method in D.METHODS:
        img = D.heat_and_mask(diff, (64, 64), method, smooth=2.0, grow_pixels=1)
        vid = D.heat_and_mask(diff.unsqueeze(1), (64, 64), method, smooth=2.0, grow_pixels=1, temporal=3)
        assert torch.equal(img[0], vid[0]) and torch.equal(img[1], vid[1])


def test_video_frames_are_normalised_together_and_laid_out_sample_major(D):
    diff = torch.zeros(2, 3, 4, 4)
    diff[0, 1, :2] = 1.0      # sample 0: only frame 1 differs
    diff[1, :, :, 2:] = 2.0   # sample 1: every frame differs on the right
    heat, mask = D.heat_and_mask(diff, (4, 4))
    assert heat.shape == mask.shape == (6, 4, 4)
    assert torch.equal(mask[0], torch.zeros(4, 4)) and torch.equal(mask[2], torch.zeros(4, 4))   # frames the prompts agree on
    assert torch.equal(mask[1, :2], torch.ones(2, 4)) and torch.equal(mask[1, 2:], torch.zeros(2, 4))
    for i in (3, 4, 5):
        assert torch.equal(mask[i, :, 2:], torch.ones(4, 2)) and torch.equal(mask[i, :, :2], torch.zeros(4, 2))


def test_video_differences_above_one_are_resampled_not_clamped(D):
    """As for images: a 0.6 ring beside a 2.4 core stays out of the mask at 8x the latent size in every frame."""
    d = torch.zeros(1, 2, 12, 12)
    d[0, :, 2:10, 2:10] = 0.6
    d[0, :, 4:8, 4:8] = 2.4
    small = D.heat_and_mask(d, (12, 12), "minmax")
    big = D.heat_and_mask(d, (96, 96), "minmax")
    assert torch.equal(big[1][:, 4::8, 4::8], small[1]) and float(small[1].sum()) == 2 * 16
    assert float(big[0][:, 20, 20].max()) == pytest.approx(0.25)     # deep in the ring (clamped enlargement: 0.6)
