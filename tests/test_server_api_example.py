"""The HTTP API example (workflows/api_example.py) run against a real server, as a user runs it."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dde_world import ui2api

SCRIPT = os.path.join(ui2api.WORKFLOW_DIR, "api_example.py")


@pytest.fixture(scope="module")
def example_run(server, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("api_example_out")
    host = server.url.split("//", 1)[1]
    proc = subprocess.run([sys.executable, SCRIPT, "--server", host, "--checkpoint", tiny_models["checkpoint"],
                           "--steps", "6", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=str(out))
    return proc, out


def load(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_example_queues_one_request_per_change_map_and_saves_each_result(example_run):
    proc, out = example_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    queued = re.findall(r"^queued (\w+): ([0-9a-f-]{36})$", proc.stdout, re.M)
    assert [name for name, _ in queued] == ["left_half", "right_half", "soft_disc"]
    assert len({pid for _, pid in queued}) == 3
    saved = dict(re.findall(r"^(\w+): (\S+\.png)$", proc.stdout, re.M))
    assert set(saved) == {"left_half", "right_half", "soft_disc"}
    for path in saved.values():
        assert os.path.isfile(path) and os.path.dirname(os.path.abspath(path)) == str(out)


def test_each_request_used_its_own_change_map(example_run):
    # white = change, black = keep exactly: each result differs from the picture only where its map
    # is above 0 (the composite gives the original back bit-exactly elsewhere)
    proc, out = example_run
    saved = dict(re.findall(r"^(\w+): (\S+\.png)$", proc.stdout, re.M))
    original = load(os.path.join(ui2api.INPUT_DIR, "example_scene.png"))
    diff = {k: np.abs(load(v) - original).max(axis=-1) for k, v in saved.items()}
    half = original.shape[1] // 2
    assert diff["left_half"][:, half:].max() <= 1 and diff["left_half"][:, :half].max() > 8
    assert diff["right_half"][:, :half].max() <= 1 and diff["right_half"][:, half:].max() > 8
    disc = diff["soft_disc"]
    assert max(disc[0, 0], disc[0, -1], disc[-1, 0], disc[-1, -1]) <= 1 and disc[half - 4:half + 4, half - 4:half + 4].max() > 8


def test_a_checkpoint_the_server_lacks_is_reported_by_name(server, tmp_path):
    host = server.url.split("//", 1)[1]
    proc = subprocess.run([sys.executable, SCRIPT, "--server", host, "--checkpoint", "no_such_model.safetensors",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode != 0
    assert "/prompt refused the workflow" in proc.stderr and "no_such_model.safetensors" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_change_maps_are_valid_greyscale_pngs(tmp_path):
    example = ui2api.api_example()
    for name, rows in example.change_maps(16).items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(example.png_grey(rows))
        picture = np.asarray(Image.open(path))
        assert picture.shape == (16, 16) and picture.dtype == np.uint8
        assert picture.tolist() == rows
