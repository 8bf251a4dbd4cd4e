"""Test tiers and shared fixtures.

Tiers (pytest markers, set from what a test needs, see ``tier_of``):
  core     nothing but torch (and the pack's pure core): always runs
  comfy    real ComfyUI in-process (fixtures comfy, cw, tiny_models), the pack loaded by ComfyUI's own loader
  server   a real ComfyUI server on 127.0.0.1 with the pack installed (fixture server)
  browser  test_browser_*: the server's frontend in headless Debian chromium (Playwright)
  oracle   test_oracle_*: ComfyUI in-process beside the peers' own code (diffusers' DiffEdit pipeline,
           exx8's Differential Diffusion pipeline) on one tiny model; needs diffusers and transformers, and
           for the tests of the ``exx8`` fixture the authors' file from a git snapshot (dde_world/exx8.py)
File names say where a test mostly lives (test_core_*, test_comfy_*, ...), not its tier.

ComfyUI is found through COMFYUI_PATH or because the pack sits in ComfyUI/custom_nodes/.
Without it the ComfyUI tiers are skipped with one loud line saying so; without diffusers or
transformers (test-only dependencies, installed by .ci/run) the oracle tier is skipped the same way, and
without the Differential Diffusion authors' snapshot (``DDE_EXX8_REPO``) the tests that run their code.
"""

from __future__ import annotations

import os
import shutil

import pytest

from dde_world import exx8 as exx8_code
from dde_world import locate

COMFY = locate.find_comfyui()
NO_COMFY = ("COMFYUI NOT FOUND: the comfy, server, browser and oracle tiers are SKIPPED "
            "(set COMFYUI_PATH to a ComfyUI checkout, see docs/development.md)")


#: the diffusers release the oracle tier is written against (its DiffEdit pipeline, and the workaround of its
#: generate_mask bug); .ci/run installs 0.42.1
ORACLE_DIFFUSERS = "0.42."


def _oracle_missing() -> str | None:
    """Why the oracle tier cannot run (diffusers / transformers not importable, another diffusers), or None."""
    import importlib.metadata
    import importlib.util

    missing = []
    for module in ("diffusers", "transformers"):   # found without importing them (every run asks)
        if importlib.util.find_spec(module) is None:
            missing.append(f"{module} not installed")
        elif module == "diffusers" and not importlib.metadata.version(module).startswith(ORACLE_DIFFUSERS):
            missing.append(f"diffusers {importlib.metadata.version(module)} installed, the tier needs {ORACLE_DIFFUSERS}x")
    if missing:
        return ("ORACLE PEERS NOT AVAILABLE: the oracle tier is SKIPPED (" + "; ".join(missing)
                + "; .ci/run installs them, see docs/development.md)")
    return None


_ORACLE_MISSING: list = []


def oracle_missing() -> str | None:
    """:func:`_oracle_missing`, computed once."""
    if not _ORACLE_MISSING:
        _ORACLE_MISSING.append(_oracle_missing())
    return _ORACLE_MISSING[0]


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
    for missing in (_browser_missing(), oracle_missing() if COMFY else None, exx8_code.missing() if COMFY else None):
        if missing:
            lines.append("!!! " + missing + " !!!")
    if COMFY and not exx8_code.missing():
        lines.append("Differential Diffusion authors' code: " + exx8_code.find_source()[1])
    return lines


#: fixtures that need ComfyUI in this process (directly or through another fixture)
COMFY_FIXTURES = {"comfy", "cw", "tiny_models"}


def tier_of(item) -> str:
    """A test's tier from what it needs: the browser and oracle files, the ``server`` fixture, ComfyUI fixtures, else core."""
    name = os.path.basename(str(item.fspath))
    if name.startswith("test_browser_"):
        return "browser"
    if name.startswith("test_oracle_"):
        return "oracle"
    names = set(getattr(item, "fixturenames", ()))
    if "server" in names:
        return "server"
    if names & COMFY_FIXTURES:
        return "comfy"
    return "core"


def pytest_collection_modifyitems(config, items):
    browser_missing = _browser_missing()
    for item in items:
        tier = tier_of(item)
        item.add_marker(getattr(pytest.mark, tier))
        if tier != "core" and not COMFY:
            item.add_marker(pytest.mark.skip(reason=NO_COMFY))
        elif tier == "browser" and browser_missing:
            item.add_marker(pytest.mark.skip(reason=browser_missing))
        elif tier == "oracle" and oracle_missing():
            item.add_marker(pytest.mark.skip(reason=oracle_missing()))
        elif tier == "oracle" and "exx8" in item.fixturenames and exx8_code.missing():
            item.add_marker(pytest.mark.skip(reason=exx8_code.missing()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COMFY:
        terminalreporter.write_line("!!! " + NO_COMFY + " !!!", red=True, bold=True)
    missing = _browser_missing()
    if COMFY and missing:
        terminalreporter.write_line("!!! " + missing + " !!!", red=True, bold=True)
    if COMFY and oracle_missing():
        terminalreporter.write_line("!!! " + oracle_missing() + " !!!", red=True, bold=True)
    if COMFY and exx8_code.missing():
        terminalreporter.write_line("!!! " + exx8_code.missing() + " !!!", red=True, bold=True)


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
    import torch

    # One torch thread: the test models are tiny, and with a server process beside this one on a 2-core CPU
    # torch's thread pool makes every small op wait on the scheduler (a 2-step tiny KSampler measured 0.05 s
    # with 1 thread against 4 s with 2 under load).
    torch.set_num_threads(1)

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return env


@pytest.fixture(scope="session")
def cw(comfy):
    """``dde_world.comfy_world`` (the analytic world as a ComfyUI MODEL), imported once ComfyUI is up."""
    from dde_world import comfy_world

    return comfy_world


@pytest.fixture(autouse=True)
def _inference_mode(request):
    if request.node.get_closest_marker("comfy") or request.node.get_closest_marker("oracle"):
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


@pytest.fixture(scope="session")
def oracle(tiny_models):
    """The tiny checkpoint on both sides (oracle tier): ComfyUI's MODEL and CLIP, diffusers' UNet, transformers' CLIP.

    ``dde_world.peers`` holds the conversion (ComfyUI's own ``unet_to_diffusers`` key map, strict loads).
    """
    import types

    import nodes

    from dde_world import peers

    model, clip, _ = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_models["checkpoint"])
    return types.SimpleNamespace(model=model, clip=clip, unet=peers.diffusers_unet(model),
                                 text_encoder=peers.transformers_clip(clip), tokenizer=peers.tokenizer(), peers=peers)


@pytest.fixture(scope="session")
def exx8(oracle):
    """``dde_world.exx8`` with the Differential Diffusion authors' ``SD2/diff_pipe.py`` executed from the snapshot
    (oracle tier; a test asking for it is skipped loudly without the snapshot: ``pytest_collection_modifyitems``)."""
    exx8_code.load()
    return exx8_code
