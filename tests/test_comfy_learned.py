"""The pack's nodes on a learned model (tests/dde_world/digits.py: trained once, cached in ~/.cache/dde).

The first run trains the model (a few minutes on CPU); later runs load it. Few digits per test.
"""

import pytest
import torch

N = 12   # held-out source digits per test


@pytest.fixture(scope="module")
def learned(comfy):
    pytest.importorskip("sklearn", reason="scikit-learn (test dependency, installed by .ci/run)")
    from dde_world import digits, digits_edits

    x, y, splits = digits.dataset()
    idx = splits["test"][:N]
    pictures, source = x[idx], y[idx]
    yield digits, digits_edits, digits_edits.Edits(comfy), pictures, source, digits_edits.targets(source)


def test_training_is_deterministic_for_a_seed(learned):
    digits = learned[0]
    with torch.inference_mode(False):
        a, b, c = digits.fit(3, 2), digits.fit(3, 2), digits.fit(4, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_encode_decode_is_exact_and_the_judge_and_samples_are_good(learned):
    digits, E, ed, pictures, source, target = learned
    assert torch.equal(digits.decode(digits.encode(pictures))[..., 0], pictures)
    assert digits.judge_accuracy("test") >= 0.97
    labels = torch.arange(10).repeat(3)
    assert E.accuracy(ed.sample(labels, seed=5), labels) >= 0.9


def test_diffedit_is_exact_outside_the_mask_and_beats_no_edit_widely(comfy, learned):
    digits, E, ed, pictures, source, target = learned
    heat, mask, area = ed.mask(pictures, source, target)                    # the node's defaults
    assert area == pytest.approx(float(mask.mean()))
    latent = {"samples": digits.encode(pictures)}
    out = comfy.run_node("DDE_DiffEditEdit", model=ed.model, query=E.cond(target), latent=latent, mask=mask,
                         steps=E.STEPS, encode_ratio=0.7, cfg=E.CFG, scheduler="normal", refine=2, invert=False,
                         reference=E.cond(source), negative=E.null(N))[0]["samples"]
    keep = torch.nn.functional.avg_pool2d(mask.unsqueeze(1), 2)[:, 0] == 0   # latent cells with no masked pixel
    assert int(keep.sum()) > 0
    assert torch.equal(out.permute(0, 2, 3, 1)[keep], latent["samples"].permute(0, 2, 3, 1)[keep])
    edited = digits.decode(out)[..., 0]
    kept = keep.repeat_interleave(2, 1).repeat_interleave(2, 2)              # their 2 x 2 pixels
    assert torch.equal(edited[kept], pictures[kept])                         # exactly the source's pixels
    no_edit, diffedit = E.accuracy(pictures, target), E.accuracy(edited, target)
    print(f"target accuracy: no edit {no_edit:.2f}, DiffEdit r 0.7 {diffedit:.2f}, mask area {area:.2f}")
    assert no_edit <= 0.1 and diffedit >= no_edit + 0.6


def test_differential_map_zero_pixels_exact_and_step_mode_follows_a_gradient(comfy, learned):
    digits, E, ed, pictures, source, target = learned
    side = digits.SIDE
    step = torch.zeros(N, side, side)
    step[:, :, 6:] = 1.0
    out = ed.differential(pictures, target, step, "step")
    assert torch.equal(out[:, :, :6], pictures[:, :, :6])                    # map 0: exactly the source
    assert float((out[:, :, 6:] - pictures[:, :, 6:]).abs().max()) > 0.3
    gradient = torch.linspace(0, 1, side).expand(N, side, side).contiguous()
    out = ed.differential(pictures, target, gradient, "step")
    full = ed.differential(pictures, target, torch.ones(N, side, side), "step")
    x, fraction = E.relative_change_curve(pictures, out, full, gradient)
    assert float(fraction[0]) == 0.0 and float(fraction[-1]) > 0.9           # map 0 keeps, map 1 is a full edit
    cam = E.cam(pictures, out, full, gradient)
    print(f"CAM of step mode on a gradient ({N} digits): {cam:.3f}")
    assert cam >= 0.9


def test_digit_test_nodes_compose_with_the_pack(comfy, learned):
    from dde_world import testnodes

    digits = learned[0]
    image, label = testnodes.DigitPicture.execute(index=3).args
    x, y, splits = digits.dataset()
    assert torch.equal(image[0, ..., 0], x[int(splits["test"][3])]) and label == int(y[int(splits["test"][3])])
    latent = testnodes.DigitsEncode.execute(image=image).args[0]
    assert torch.equal(testnodes.DigitsDecode.execute(samples=latent).args[0], image)
    model = testnodes.DigitsModel.execute().args[0]
    target = (label + 1) % 10
    heat, mask, _, area = comfy.run_node("DDE_DiffEditMask", model=model,
                                         query=testnodes.DigitCondition.execute(digit=target).args[0], latent=latent,
                                         strength=0.5, n=10, seed=0, cfg=1.0, threshold_method="rescale", threshold=0.5,
                                         clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0, batch_size=0,
                                         reference=testnodes.DigitCondition.execute(digit=label).args[0], image=image)
    assert mask.shape == (1, 16, 16) and 0.0 < area < 1.0
    assert torch.equal(testnodes.DigitCondition.execute(digit=-1).args[0][0][0], torch.zeros(1, 1, 10))
