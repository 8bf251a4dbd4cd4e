"""Adherence metrics: exact values on hand-made data, correct edits ranking above wrong ones, the CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dde_world.locate import PACK_ROOT, import_pack

import_pack()   # the ``pack`` fixture's import, done once here so the modules can be named at the top

from dde_pack.nodes.core import construct as C  # noqa: E402
from dde_pack.nodes.core import metrics as M  # noqa: E402
from dde_pack.nodes.core.maps import resize_maps  # noqa: E402


def _blend(original, edit, weights):
    """A stand-in for an edit that follows ``weights`` exactly: ``original (1 - w) + edit w`` per pixel."""
    w = resize_maps(weights, original.shape[1:3]).unsqueeze(-1)
    return original * (1 - w) + edit * w


# -- building blocks -------------------------------------------------------------------------------

def test_realized_change_is_mean_abs_rgb_difference_area_resized():
    orig = torch.zeros(1, 4, 4, 4)                # RGBA: alpha is ignored
    res = orig.clone()
    res[0, 0, 0] = torch.tensor([0.3, 0.6, 0.9, 1.0])
    full = M.realized_change(orig, res, (4, 4))
    assert full[0, 0, 0].item() == pytest.approx(0.6) and full.sum().item() == pytest.approx(0.6)
    grid = M.realized_change(orig, res, (2, 2))
    assert grid[0].flatten().tolist() == pytest.approx([0.15, 0.0, 0.0, 0.0])
    with pytest.raises(M.InputError,
                       match=r"input 'result' expected an IMAGE of the original's size"):
        M.realized_change(orig, torch.zeros(1, 4, 5, 4), (2, 2))
    with pytest.raises(M.InputError, match="input 'result' expected finite pixel values"):
        M.realized_change(orig, torch.full((1, 4, 4, 4), float("nan")), (2, 2))
    with pytest.raises(M.InputError, match="input 'smooth'"):
        M.realized_change(orig, res, (2, 2), -1)


def test_pearson_spearman_and_tied_ranks():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert M.pearson(x, 2 * x).item() == pytest.approx(1.0)
    assert M.pearson(x, torch.tensor([[1.0, 3.0, 2.0, 4.0]])).item() == pytest.approx(0.8)
    assert M.ranks(torch.tensor([[0.0, 0.0, 5.0, 1.0]])).tolist() == [[1.5, 1.5, 4.0, 3.0]]
    assert M.spearman(x, x ** 3).item() == pytest.approx(1.0)
    assert math.isnan(M.pearson(x, torch.ones(1, 4)).item())


def test_calibration_parsing():
    expect = [(0.0, 0.0), (0.5, 0.04), (1.0, 0.12)]
    for text in ("0:0, 0.5:0.04, 1:0.12", "1:0.12\n0:0\n0.5:0.04", "[[0, 0], [0.5, 0.04], [1, 0.12]]",
                 "0 0\n0.5, 0.04\n1 0.12"):
        assert M.parse_calibration(text) == expect, text
    assert M.parse_calibration("  ") is None and M.parse_calibration(None) is None
    for bad, why in (("0:0, 1", "pairs of two numbers"), ("0:0, 2:0.1", "strengths in 0..1"),
                     ("0:0.1, 1:0.1", "at least two pairs"), ("[[0, 0", "valid JSON")):
        with pytest.raises(M.InputError, match=rf"input 'calibration' expected {why}"):
            M.parse_calibration(bad)


def test_calibrate_interpolates_the_sweep_and_clamps():
    pairs = [(0.0, 0.0), (0.5, 0.1), (1.0, 0.4)]
    r = torch.tensor([[[0.0, 0.05, 0.1, 0.25, 0.4, 0.9]]])
    out, how = M.calibrate(r, torch.zeros_like(r), pairs)
    assert out[0, 0].tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    assert "3-point" in how
    bumpy = [(0.0, 0.0), (0.25, 0.2), (0.5, 0.1), (1.0, 0.4)]   # non-monotone: made non-decreasing
    out, _ = M.calibrate(torch.tensor([[[0.1, 0.2, 0.3]]]), torch.zeros(1, 1, 3), bumpy)
    assert out[0, 0].tolist() == pytest.approx([0.125, 0.25, 0.25 + 0.75 * 0.5])


def test_fallback_normalisation_is_least_squares_and_says_so():
    m = torch.tensor([[[0.0, 0.5, 1.0]]])
    out, how = M.calibrate(0.2 * m, m, None)
    assert out[0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert "NO CALIBRATION" in how and "a = sum(R m)/sum(R^2) = 5" in how


def test_leakage_is_exact_over_map_zero_pixels():
    orig = torch.zeros(1, 4, 4, 3)
    res = orig.clone()
    res[0, :, 2:] = 0.5                     # the change follows the map...
    res[0, 1, 0] = 0.2                      # ...but one keep pixel changed by 0.2
    m = torch.zeros(1, 4, 4)
    m[:, :, 2:] = 1.0
    out = M.adherence(orig, res, m)
    assert out["leakage"].item() == pytest.approx(0.2 / 8)
    assert out["leakage_max"].item() == pytest.approx(0.2)
    assert out["mean_change"].item() == pytest.approx((0.5 * 8 + 0.2) / 16)
    assert math.isnan(M.adherence(orig, res, torch.ones(1, 4, 4))["leakage"].item())   # no keep pixel


def test_uniform_map_gives_a_calibration_pair_and_undefined_correlation():
    orig = torch.zeros(2, 8, 8, 3)
    res = orig + torch.linspace(0, 0.2, 8).view(1, 1, 8, 1)
    out = M.adherence(orig, res, torch.full((1, 8, 8), 0.5))
    assert math.isnan(out["correlation"][0].item()) and math.isnan(out["seam"][0].item())
    text = M.report(out)
    assert "image 1: the map is uniform; calibration pair 0.5:0.1" in text
    assert "NO CALIBRATION" in text and "grid: 8x8" in text


def test_seam_is_zero_for_change_that_follows_a_soft_map_and_positive_for_a_step():
    m = C.linear_gradient((1, 32, 32), 0.0, 0.0)
    orig = torch.full((1, 32, 32, 3), 0.2)
    smooth = M.adherence(orig, orig + 0.5 * m.unsqueeze(-1), m)["seam"].item()
    step = M.adherence(orig, orig + 0.5 * (m > 0.5).float().unsqueeze(-1), m)["seam"].item()
    assert smooth == pytest.approx(0.0, abs=1e-5)
    assert step > 0.01


# -- a right edit ranks above wrong ones -----------------------------------------------------------

@pytest.fixture(scope="module")
def scene(world):
    """Scene 0 of the analytic world at 256 px, a soft map around its edited region (32 x 32 grid), two edits.

    ``replace``: an unrelated picture (differs by 0.16..0.6, with its own edges on the map's contour);
    ``recolour``: every pixel shifted by 0.3 (the same amount of change everywhere).
    """
    original = world.decode(world.latent(0, "reference"))
    edits = {"replace": 1.0 - world.decode(world.latent(0, "query")),
             "recolour": torch.where(original < 0.5, original + 0.3, original - 0.3)}
    region = world.scenes[0].region.float().unsqueeze(0)
    change_map = C.distance_falloff(region, 1.0, 5.0)
    assert 0.0 < change_map.mean().item() < 0.6 and (change_map == 0).any()
    return original, edits, change_map


def _results(original, edit, m):
    return {
        "correct": _blend(original, edit, m),
        "inverted": _blend(original, edit, 1.0 - m),
        "leaky": _blend(original, edit, torch.where(m == 0, torch.full_like(m, 0.3), m)),
        "seam": _blend(original, edit, (m > 0.5).float()),
    }


def _sweep(original, edit, m):
    """A real uniform-map sweep of this edit: (strength, mean realized change) at 5 strengths."""
    pairs = []
    for s in (0.0, 0.25, 0.5, 0.75, 1.0):
        uniform = torch.full_like(m, s)
        pairs.append((s, M.adherence(original, _blend(original, edit, uniform), uniform)["mean_change"].item()))
    return pairs


@pytest.mark.parametrize("edit", ["replace", "recolour"])
@pytest.mark.parametrize("calibrated", [False, True])
def test_correct_edit_ranks_above_inverted_leaky_and_seamy(scene, edit, calibrated):
    original, edits, m = scene
    calibration = _sweep(original, edits[edit], m) if calibrated else None
    got = {k: M.adherence(original, r, m, calibration) for k, r in _results(original, edits[edit], m).items()}
    corr = {k: v["correlation"].item() for k, v in got.items()}
    dist = {k: v["distance"].item() for k, v in got.items()}
    leak = {k: v["leakage"].item() for k, v in got.items()}
    assert corr["correct"] > 0.8 and corr["inverted"] < 0 and corr["correct"] > max(corr["seam"], corr["leaky"])
    assert got["correct"]["spearman"].item() > got["inverted"]["spearman"].item()
    assert all(dist["correct"] < dist[k] for k in ("inverted", "leaky", "seam"))
    assert leak["correct"] < 0.01 < leak["leaky"] and leak["correct"] < leak["inverted"]
    assert ("NO CALIBRATION" in got["correct"]["how"]) is not calibrated


@pytest.mark.parametrize("calibrated", [False, True])
def test_seam_ranks_a_hard_step_above_a_change_that_follows_the_soft_map(scene, calibrated):
    original, edits, m = scene
    calibration = _sweep(original, edits["recolour"], m) if calibrated else None
    results = _results(original, edits["recolour"], m)
    seam = {k: M.adherence(original, results[k], m, calibration)["seam"].item() for k in ("correct", "seam")}
    assert abs(seam["correct"]) < 0.005 and seam["seam"] > 0.03


def test_calibration_undoes_a_nonlinear_response():
    m = C.linear_gradient((1, 24, 24), 0.0, 0.0)
    orig = torch.full((1, 24, 24, 3), 0.1)
    response = lambda s: 0.6 * s ** 2        # noqa: E731  realized change grows with the square of the strength
    res = orig + response(m).unsqueeze(-1)
    pairs = [(s / 10, response(s / 10)) for s in range(11)]
    calibrated = M.adherence(orig, res, m, pairs)["distance"].item()
    fallback = M.adherence(orig, res, m)["distance"].item()
    assert calibrated < 0.02 < fallback


def test_batches_broadcast_and_mismatches_name_the_input():
    orig = torch.zeros(1, 8, 8, 3)
    res = torch.zeros(3, 8, 8, 3)
    res[1] = 0.4
    out = M.adherence(orig, res, torch.ones(1, 8, 8))
    assert out["mean_change"].tolist() == pytest.approx([0.0, 0.4, 0.0])
    assert out["calibrated"].shape == (3, 8, 8) and out["calibrated"].dtype == torch.float32
    with pytest.raises(M.InputError, match="input 'change_map' expected 1 map or 3 maps"):
        M.adherence(orig, res, torch.ones(2, 8, 8))
    with pytest.raises(M.InputError, match="input 'change_map' expected finite values"):
        M.adherence(orig, res, torch.full((1, 8, 8), float("nan")))


def test_inputs_are_not_mutated():
    orig, res, m = torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8) * 1.2
    copies = [t.clone() for t in (orig, res, m)]
    M.adherence(orig, res, m, None, 2, True)
    assert all(torch.equal(a, b) for a, b in zip((orig, res, m), copies))


# -- command line ----------------------------------------------------------------------------------

def _png(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def test_command_line_prints_a_table_and_json(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    orig = np.full((32, 32, 3), 0.2)
    m = xx
    _png(tmp_path / "o.png", orig)
    _png(tmp_path / "r.png", orig + 0.4 * m[..., None])
    _png(tmp_path / "m.png", m)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [sys.executable, os.path.join("benchmarks", "adherence.py"), str(tmp_path / "o.png"), str(tmp_path / "r.png"),
            str(tmp_path / "m.png")]
    table = subprocess.run(args, cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["metric", "image", "0", "mean", "better"]
    assert "NO CALIBRATION" in table.stdout
    js = subprocess.run(args + ["--json", "--calibration", "0:0, 1:0.4"], cwd=PACK_ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
    data = json.loads(js.stdout)
    assert data["correlation"]["mean"] > 0.99 and data["distance"]["mean"] < 0.01
    assert data["leakage"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert data["grid"] == [32, 32] and "2-point" in data["calibration"]
    _png(tmp_path / "small.png", orig[:16])
    bad = subprocess.run(args[:3] + [str(tmp_path / "small.png"), str(tmp_path / "m.png")], cwd=PACK_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "input 'result' expected an IMAGE of the original's size" in bad.stderr
