"""Convert a UI-format workflow (what the frontend saves) to the API prompt that ``/prompt`` takes.

The frontend does this in ``app.graphToPrompt()``; this is the same conversion from the saved JSON
and the server's ``/object_info``, for tests and scripts that never open a browser:

* **widget values**: ``widgets_values`` lists the node's widgets in the order the frontend creates
  them: the widget inputs of the node definition (required, then optional, in ``input_order``),
  each INT/FLOAT/COMBO with ``control_after_generate`` (an INT named ``seed``/``noise_seed`` unless
  the flag says otherwise) followed by its "control after generate" value, which is skipped.
  Widgets the frontend appends itself (upload buttons, players) come last and are ignored;
  widgets that do not serialize leave ``null`` holes in place, which keeps the positions.
* **links**: an input with a link takes ``[origin node id, output slot]`` — also a widget input
  converted to a socket. Links are followed through ``Reroute`` nodes and through bypassed nodes
  (mode 4: the output passes on the node's input at the same slot if it has the link's type, else
  its first input of that type, as the frontend does). A link from a muted node (mode 2) or from
  nothing is ignored: a socket input is left out, a widget input keeps its widget value.
* **PrimitiveNode**: its value (``widgets_values[0]``) is written into every widget it feeds.
* List values are sent as ``{"__value__": [...]}`` and links to nodes left out of the prompt are
  dropped, as the frontend does.
* **Note, MarkdownNote, Reroute, PrimitiveNode** and muted or bypassed nodes are not in the prompt.

Subgraphs (``definitions.subgraphs``) and group nodes are not supported (a clear error).
"""

from __future__ import annotations

import copy
import glob
import importlib.util
import os

from .locate import PACK_ROOT

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


class ConversionError(ValueError):
    pass


def _link_table(workflow: dict) -> dict[int, tuple]:
    """link id -> (origin id, origin slot, target id, target slot, type); list or dict links."""
    table = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            table[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                                 link.get("type"))
        else:
            table[link[0]] = tuple(link[1:6])
    return table


def input_is_widget(spec) -> bool:
    """Whether an ``/object_info`` input spec makes a widget (a combo list or a widget type)."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def has_control(name: str, spec) -> bool:
    """Whether the frontend puts a "control after generate" widget after this one."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    flag = options.get("control_after_generate")
    if kind == "INT":
        return bool(flag) if flag is not None else name in ("seed", "noise_seed")
    return bool(flag) and (kind in ("FLOAT", "COMBO") or isinstance(kind, list))


def widget_layout(info: dict) -> list[tuple[str, bool]]:
    """``[(widget name, followed by a control value)]`` in ``widgets_values`` order for a node class."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {k: list(v) for k, v in inputs.items()}
    layout = []
    for section in ("required", "optional"):
        specs = inputs.get(section) or {}
        for name in order.get(section, []):
            spec = specs.get(name)
            if spec is not None and input_is_widget(spec):
                layout.append((name, has_control(name, spec)))
    return layout


def widget_values(node: dict, info: dict) -> dict:
    """The node's widget values by name."""
    values = node.get("widgets_values")
    layout = widget_layout(info)
    if values is None:
        return {}
    if isinstance(values, dict):   # some custom nodes save a name -> value mapping
        return {name: values[name] for name, _ in layout if name in values}
    out, i = {}, 0
    for name, control in layout:
        if i >= len(values):
            raise ConversionError(f"node {node['id']} ({node['type']}): widgets_values has {len(values)} values, "
                                  f"the node definition needs more (at '{name}')")
        out[name] = values[i]
        i += 1
        if control and i < len(values) and values[i] in CONTROL_VALUES:
            i += 1
    return out


class _Graph:
    def __init__(self, workflow: dict):
        defs = (workflow.get("definitions") or {}).get("subgraphs") or []
        self.subgraphs = {d.get("id") for d in defs}
        self.nodes = {n["id"]: n for n in workflow["nodes"]}
        self.links = _link_table(workflow)
        groups = (workflow.get("extra") or {}).get("groupNodes") or {}
        for n in self.nodes.values():
            if n["type"] in self.subgraphs or n["type"].startswith("workflow>") or n["type"] in groups:
                raise ConversionError(f"node {n['id']} ({n['type']}) is a subgraph or group node: not supported")

    def source(self, link_id, seen=()):
        """The real source of a link: ``("link", node id, slot)``, ``("value", v)`` or None."""
        if link_id is None or link_id not in self.links:
            return None
        origin, slot, _target, _tslot, kind = self.links[link_id]
        node = self.nodes.get(origin)
        if node is None or origin in seen:
            return None
        seen = (*seen, origin)
        mode = node.get("mode", MODE_ALWAYS)
        if node["type"] == "Reroute":
            inputs = node.get("inputs") or []
            return self.source(inputs[0].get("link"), seen) if inputs else None
        if node["type"] == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return ("value", values[0]) if values and mode != MODE_NEVER else None
        if mode == MODE_NEVER:
            return None
        if mode == MODE_BYPASS:
            return self.source(self._bypass_input(node, slot, kind), seen)
        return ("link", origin, slot)

    def _bypass_input(self, node: dict, slot: int, kind):
        """The link a bypassed node passes on from its output ``slot`` to an input of type ``kind``:
        its input at the same slot if that has the type, else its first input of the type."""
        inputs = node.get("inputs") or []
        if kind in (None, "", "*"):
            index = slot if slot < len(inputs) else 0
        elif slot < len(inputs) and inputs[slot].get("type") == kind:
            index = slot
        else:
            index = next((i for i, inp in enumerate(inputs) if inp.get("type") == kind), -1)
        return inputs[index].get("link") if 0 <= index < len(inputs) else None


def convert(workflow: dict, object_info: dict) -> dict:
    """The API prompt ``{node id: {"class_type", "inputs", "_meta"}}`` of a UI-format workflow."""
    graph = _Graph(workflow)
    prompt = {}
    for node in sorted(graph.nodes.values(), key=lambda n: n.get("order", 0)):
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", MODE_ALWAYS) in (MODE_NEVER, MODE_BYPASS):
            continue
        info = object_info.get(kind)
        if info is None:
            raise ConversionError(f"node {node['id']}: type '{kind}' is not known to the server (missing custom node?)")
        inputs = {k: _api_value(v) for k, v in widget_values(node, info).items()}
        for inp in node.get("inputs") or []:
            src = graph.source(inp.get("link"))
            if src is None:          # unlinked, or from a muted node: a widget keeps its own value
                continue
            name = inp.get("widget", {}).get("name") or inp["name"]
            inputs[name] = _api_value(src[1]) if src[0] == "value" else [str(src[1]), src[2]]
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name") or kind}}
    for entry in prompt.values():    # links to nodes that are not in the prompt are dropped
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt


def _api_value(value):
    """A widget value as the frontend sends it: lists are wrapped so they are not read as links."""
    return {"__value__": copy.deepcopy(value)} if isinstance(value, list) else value


def set_inputs(prompt: dict, class_type: str, **values) -> list[str]:
    """Set widget inputs on every node of ``class_type`` (e.g. point loaders at a test model); returns the ids."""
    ids = [k for k, v in prompt.items() if v["class_type"] == class_type]
    for k in ids:
        prompt[k]["inputs"].update(values)
    return ids


# -- the pack's example workflows -------------------------------------------------------------------

WORKFLOW_DIR = os.path.join(PACK_ROOT, "workflows")
INPUT_DIR = os.path.join(WORKFLOW_DIR, "inputs")


#: the example workflows: short name (tests, README pictures in workflows/previews) -> file name without
#: ".json", which is the card's title in ComfyUI's template browser (the frontend shows the file name as
#: the title and loads ``<file name>.jpg`` next to it as the card's picture)
TITLES = {
    "soft_inpainting_gradient": "Soft inpainting, radial map",
    "diffedit_mask_edit": "DiffEdit mask, then edit",
    "diffedit_semantic_differential": "DiffEdit heat as change map",
    "strength_fan": "Strength Fan, six strengths",
    "depth_change_map": "Background change by depth",
    "sdxl_base_refiner_split": "SDXL base and refiner split",
    "flow_model_sd3": "SD3 flow model, denoise mode",
    "edit_change_map": "Keep what an editor left alone",
    "few_step_fractional": "Few-step model, smooth strengths",
    "several_edits": "Several edits in one pass",
    "region_locked_edit": "Region-locked instruction edit",
}


def workflow_files() -> list[str]:
    return sorted(glob.glob(os.path.join(WORKFLOW_DIR, "*.json")))


def workflow_path(name: str) -> str:
    """The JSON file of the example workflow with short name ``name`` (a key of :data:`TITLES`)."""
    return os.path.join(WORKFLOW_DIR, TITLES[name] + ".json")


def api_example():
    """``workflows/api_example.py`` as a module (its ``upload`` is the one the README shows)."""
    spec = importlib.util.spec_from_file_location("dde_api_example", os.path.join(WORKFLOW_DIR, "api_example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upload_inputs(host: str) -> list[str]:
    """Upload every picture of ``workflows/inputs`` to the server at ``host`` (``127.0.0.1:port``)."""
    upload = api_example().upload
    names = []
    for path in sorted(glob.glob(os.path.join(INPUT_DIR, "*.png"))):
        with open(path, "rb") as f:
            names.append(upload(host, os.path.basename(path), f.read()))
    return names
