"""The pack root and the core import cleanly without ComfyUI, and the core never imports comfy."""

import ast
import os
import subprocess
import sys

from dde_world.locate import PACK_ROOT

CORE = os.path.join(PACK_ROOT, "nodes", "core")


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_root_init_imports_without_comfy_and_keeps_sys_path():
    code = f"""
import importlib.util, sys
root = {PACK_ROOT!r}
spec = importlib.util.spec_from_file_location("packroot", root + "/__init__.py", submodule_search_locations=[root])
m = importlib.util.module_from_spec(spec); sys.modules["packroot"] = m; spec.loader.exec_module(m)
import packroot.nodes.core.schedule, packroot.nodes.core.maps, packroot.nodes.core.pixels
bad = sorted(k for k in sys.modules if k == "comfy" or k.startswith("comfy.") or k.startswith("comfy_api"))
print(m.WEB_DIRECTORY, callable(m.comfy_entrypoint), root in sys.path, bad)
"""
    assert _run(code) == "./js True False []"


def test_core_sources_never_import_comfy():
    offenders = []
    for name in sorted(os.listdir(CORE)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(CORE, name)).read())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            offenders += [f"{name}: {m}" for m in mods if m.split(".")[0] in ("comfy", "comfy_api", "nodes", "folder_paths",
                                                                              "comfy_extras", "server", "execution")]
    assert offenders == []


def test_requirements_name_only_card_packages_and_never_pin_torch():
    lines = [l.split("#")[0].strip() for l in open(os.path.join(PACK_ROOT, "requirements.txt"))]
    names = [l for l in lines if l]
    assert set(names) <= {"torch", "numpy", "pillow", "einops", "kornia"}
    assert "torch" in names  # listed, never pinned
    assert not any(n.startswith("torch") and n != "torch" for n in names)


def test_every_requirement_is_imported_by_the_pack():
    imported = set()
    for folder, _, files in os.walk(os.path.join(PACK_ROOT, "nodes")):
        for name in files:
            if name.endswith(".py"):
                for node in ast.walk(ast.parse(open(os.path.join(folder, name)).read())):
                    if isinstance(node, ast.Import):
                        imported |= {a.name.split(".")[0] for a in node.names}
                    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        imported.add(node.module.split(".")[0])
    module_of = {"torch": "torch", "numpy": "numpy", "pillow": "PIL", "einops": "einops", "kornia": "kornia"}
    lines = [l.split("#")[0].strip() for l in open(os.path.join(PACK_ROOT, "requirements.txt"))]
    assert [n for n in lines if n and module_of[n] not in imported] == []
