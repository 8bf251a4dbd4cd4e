"""Finding ComfyUI and loading this pack into it in-process, the way ComfyUI itself does.

Used by the test tiers, the demo and the benchmarks. ComfyUI is found through ``COMFYUI_PATH``
or because the pack sits in ``ComfyUI/custom_nodes/``. The pack root is never put on
``sys.path`` (its ``nodes/`` folder would shadow ComfyUI's ``nodes.py``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import tempfile

PACK_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACK_NAME = "dde_pack"


def find_comfyui() -> str | None:
    """ComfyUI's root folder, or None."""
    env = os.environ.get("COMFYUI_PATH")
    candidates = [env] if env else []
    parent = os.path.dirname(PACK_ROOT)
    if os.path.basename(parent) == "custom_nodes":
        candidates.append(os.path.dirname(parent))
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "main.py")) and os.path.isdir(os.path.join(c, "comfy")):
            return os.path.abspath(c)
    return None


def _strip_pack_root_from_path():
    root = os.path.realpath(PACK_ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != root]


def import_pack():
    """Import the pack root as the package ``dde_pack`` (works without ComfyUI; core only)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, os.path.join(PACK_ROOT, "__init__.py"),
                                                  submodule_search_locations=[PACK_ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


class ComfyInProcess:
    """ComfyUI imported into this process with the pack loaded by ``nodes.load_custom_node``."""

    def __init__(self, comfy_path: str, cpu: bool = True):
        self.path = comfy_path
        _strip_pack_root_from_path()
        if comfy_path not in sys.path:
            sys.path.insert(0, comfy_path)
        import comfy.cli_args

        if cpu:   # the tests and the CPU benchmarks; a GPU benchmark lets ComfyUI pick its device
            comfy.cli_args.args.cpu = True
        self.tmp = tempfile.mkdtemp(prefix="dde_comfy_")
        import folder_paths

        for kind in ("output", "temp", "input"):
            os.makedirs(os.path.join(self.tmp, kind), exist_ok=True)
        folder_paths.set_output_directory(os.path.join(self.tmp, "output"))
        folder_paths.set_temp_directory(os.path.join(self.tmp, "temp"))
        folder_paths.set_input_directory(os.path.join(self.tmp, "input"))
        import utils.install_util  # noqa: F401  ComfyUI's utils package, before a builtin node imports comfy/utils.py as "utils"
        import nodes  # ComfyUI's nodes.py

        self.nodes = nodes
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        self.ids_before = set(nodes.NODE_CLASS_MAPPINGS)
        self.loaded = asyncio.run(nodes.load_custom_node(PACK_ROOT))
        self.module_name = PACK_ROOT.replace(".", "_x_")
        self.pack_ids = sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items()
                               if getattr(v, "__module__", "").startswith(self.module_name + "."))
        self.clashes = sorted(set(self.pack_ids) & self.ids_before)

    def node(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def module(self, dotted: str):
        """A submodule of the pack as ComfyUI loaded it, e.g. ``module('nodes.sampling')``."""
        return sys.modules[self.module_name + "." + dotted]

    def add_model_dir(self, models_dir: str):
        import folder_paths

        for kind in ("checkpoints", "unet", "vae", "diffusion_models"):
            sub = "unet" if kind == "diffusion_models" else kind
            folder_paths.add_model_folder_path(kind, os.path.join(models_dir, sub))


_INSTANCE: ComfyInProcess | None = None


def comfy_in_process(comfy_path: str, cpu: bool = True) -> ComfyInProcess:
    """The process's one in-process ComfyUI; ``cpu=False`` (benchmarks on a GPU) leaves the device to ComfyUI."""
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = ComfyInProcess(comfy_path, cpu=cpu)
    return _INSTANCE
