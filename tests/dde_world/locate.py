"""Finding ComfyUI and loading this pack into it in-process, the way ComfyUI itself does.

Used by the test tiers, the demo and the benchmarks. ComfyUI is found through ``COMFYUI_PATH``
or because the pack sits in ``ComfyUI/custom_nodes/``. The pack root is never put on
``sys.path`` (its ``nodes/`` folder would shadow ComfyUI's ``nodes.py``).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import shutil
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


def pack_module_name() -> str:
    """The name ComfyUI's ``load_custom_node`` gives the pack's package (its path, dots escaped)."""
    return PACK_ROOT.replace(".", "_x_")


def import_pack():
    """The pack's package, also reachable as ``dde_pack`` (works without ComfyUI; core only).

    It is imported under the very name ComfyUI's loader uses, and its pure core is aliased as
    ``dde_pack.nodes.core.*``: in a process that also loads the pack through ComfyUI, the core
    exists once (one ``InputError`` class, one set of constants), whichever is imported first.
    """
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    real = pack_module_name()
    if real not in sys.modules:
        spec = importlib.util.spec_from_file_location(real, os.path.join(PACK_ROOT, "__init__.py"),
                                                      submodule_search_locations=[PACK_ROOT])
        module = importlib.util.module_from_spec(spec)
        sys.modules[real] = module
        spec.loader.exec_module(module)
    core = sorted(f"nodes.core.{n[:-3]}" for n in os.listdir(os.path.join(PACK_ROOT, "nodes", "core"))
                  if n.endswith(".py") and n != "__init__.py")
    for sub in ("nodes", "nodes.core", *core):
        sys.modules[f"{PACK_NAME}.{sub}"] = importlib.import_module(f"{real}.{sub}")
    sys.modules[PACK_NAME] = sys.modules[real]
    return sys.modules[PACK_NAME]


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
        atexit.register(shutil.rmtree, self.tmp, True)   # ComfyUI's output/temp/input folders of this process
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
        self.module_name = pack_module_name()
        self.pack_ids = sorted(k for k, v in nodes.NODE_CLASS_MAPPINGS.items()
                               if getattr(v, "__module__", "").startswith(self.module_name + "."))
        self.clashes = sorted(set(self.pack_ids) & self.ids_before)

    def node(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def run_node(self, node_id: str, **inputs):
        """Execute a node by id with inputs by name, as ComfyUI would: widgets left out take their schema default
        (a combo without one its first option); optional sockets left out are not passed. Returns the outputs."""
        cls = self.node(node_id)
        kwargs = {}
        for spec in cls.GET_SCHEMA().inputs:
            if spec.id in inputs:
                kwargs[spec.id] = inputs.pop(spec.id)
            elif getattr(spec, "default", None) is not None:
                kwargs[spec.id] = spec.default
            elif getattr(spec, "options", None):
                kwargs[spec.id] = spec.options[0]
            elif not spec.optional:
                raise TypeError(f"{node_id}: no value for required input '{spec.id}'")
        if inputs:
            raise TypeError(f"{node_id} has no input(s) {sorted(inputs)}")
        return cls.execute(**kwargs)

    def module(self, dotted: str):
        """A submodule of the pack as ComfyUI loaded it, e.g. ``module('nodes.hooks')``."""
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
