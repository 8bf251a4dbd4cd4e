"""Test tiers and shared fixtures.

Tiers (pytest markers, set from the file name):
  core     test_core_*     pure torch, always runs
  comfy    test_comfy_*    real ComfyUI in-process, the pack loaded by ComfyUI's own loader
  server   test_server_*   a real ComfyUI server on 127.0.0.1 with the pack installed
  browser  test_browser_*  the server's frontend in headless Debian chromium (Playwright)

ComfyUI is found through COMFYUI_PATH or because the pack sits in ComfyUI/custom_nodes/.
Without it the ComfyUI tiers are skipped with one loud line saying so.
"""

from __future__ import annotations

import os
import shutil

import pytest

from dde_world import locate

COMFY = locate.find_comfyui()
TIERS = {"test_core_": "core", "test_comfy_": "comfy", "test_server_": "server", "test_browser_": "browser"}
NO_COMFY = ("COMFYUI NOT FOUND: the comfy, server and browser tiers are SKIPPED "
            "(set COMFYUI_PATH to a ComfyUI checkout, see README 'Tests')")


def _browser_missing() -> str | None:
    exe = os.environ.get("DDE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
    if not os.path.exists(exe):
        return "CHROMIUM NOT FOUND: the browser tier is SKIPPED (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "PLAYWRIGHT NOT INSTALLED: the browser tier is SKIPPED (pip install playwright)"
    return None


def pytest_report_header(config):
    lines = [f"differential-edit pack: {locate.PACK_ROOT}"]
    lines.append(f"ComfyUI: {COMFY}" if COMFY else "!!! " + NO_COMFY + " !!!")
    missing = _browser_missing()
    if missing:
        lines.append("!!! " + missing + " !!!")
    return lines


def pytest_collection_modifyitems(config, items):
    browser_missing = _browser_missing()
    for item in items:
        name = os.path.basename(str(item.fspath))
        tier = next((t for p, t in TIERS.items() if name.startswith(p)), "core")
        item.add_marker(getattr(pytest.mark, tier))
        if tier != "core" and not COMFY:
            item.add_marker(pytest.mark.skip(reason=NO_COMFY))
        elif tier == "browser" and browser_missing:
            item.add_marker(pytest.mark.skip(reason=browser_missing))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COMFY:
        terminalreporter.write_line("!!! " + NO_COMFY + " !!!", red=True, bold=True)
    missing = _browser_missing()
    if COMFY and missing:
        terminalreporter.write_line("!!! " + missing + " !!!", red=True, bold=True)


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pack():
    """The pack imported as the package ``dde_pack`` (no ComfyUI needed for ``dde_pack.nodes.core``)."""
    return locate.import_pack()


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI in-process with the pack loaded by ``nodes.load_custom_node`` (progress bars off)."""
    env = locate.comfy_in_process(COMFY)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return env


@pytest.fixture(scope="session")
def cw(comfy):
    """``dde_world.comfy_world`` (the analytic world as a ComfyUI MODEL), imported once ComfyUI is up."""
    from dde_world import comfy_world

    return comfy_world


@pytest.fixture(autouse=True)
def _inference_mode(request):
    if request.node.get_closest_marker("comfy"):
        import torch

        with torch.inference_mode():
            yield
    else:
        yield


@pytest.fixture(scope="session")
def world():
    from dde_world.analytic import AnalyticWorld

    return AnalyticWorld()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, comfy):
    """A models folder with the tiny SD1.5-shaped checkpoint, UNet and TAESD VAE (written now)."""
    from dde_world.tiny import write_tiny_models

    models = str(tmp_path_factory.mktemp("models"))
    info = write_tiny_models(models)
    comfy.add_model_dir(models)
    info["dir"] = models
    return info


@pytest.fixture(scope="session")
def server(tiny_models):
    """A real ComfyUI server (127.0.0.1, free port) with the pack and the analytic test world.

    ``--cache-none``: every prompt executes every node, so comparing two runs of one prompt
    compares two real executions, not a cached result with itself.
    """
    from dde_world.server import ComfyServer

    srv = ComfyServer(COMFY, models_dir=tiny_models["dir"], extra_args=["--cache-none"])
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()
