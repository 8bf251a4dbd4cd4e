"""The pack as ComfyUI's own loader sees it: ids, schemas, tooltips, no clashes."""

import os

from dde_world.locate import PACK_ROOT


def test_loader_registers_exactly_the_extension_nodes(comfy):
    assert comfy.loaded is True
    expected = sorted(n.GET_SCHEMA().node_id for n in comfy.module("nodes.extension").node_list())
    assert comfy.pack_ids == expected


def test_ids_are_prefixed_and_clash_with_nothing_comfyui_has(comfy):
    assert comfy.clashes == []
    assert all(i.startswith("DDE_") for i in comfy.pack_ids)


def test_every_input_has_a_tooltip_and_nodes_have_friendly_names(comfy):
    for node_id in comfy.pack_ids:
        cls = comfy.node(node_id)
        schema = cls.GET_SCHEMA()
        assert schema.display_name and not schema.display_name.startswith("DDE"), node_id
        assert len(schema.display_name) <= 32, f"{node_id}: the frontend's search finds nothing past 32 characters"
        assert schema.category.startswith("differential edit"), node_id
        assert schema.description, node_id
        for inp in schema.inputs:
            assert inp.tooltip, f"{node_id}.{inp.id} has no tooltip"
        info = cls.GET_NODE_INFO_V1()   # what /object_info serves
        assert info["python_module"].endswith(os.path.basename(PACK_ROOT))


def test_web_directory_is_registered(comfy):
    import nodes

    dirs = {os.path.realpath(p) for p in nodes.EXTENSION_WEB_DIRS.values()}
    assert os.path.realpath(os.path.join(PACK_ROOT, "js")) in dirs


def test_pyproject_is_what_the_comfy_registry_and_comfyui_read(comfy):
    import tomllib

    from comfy_config import config_parser

    parsed = config_parser.extract_node_configuration(PACK_ROOT)
    assert parsed.project.name == "comfyui-differential-edit"
    assert parsed.tool_comfy.publisher_id and parsed.tool_comfy.display_name
    assert parsed.tool_comfy.web == "js"
    with open(os.path.join(PACK_ROOT, "pyproject.toml"), "rb") as f:
        raw = tomllib.load(f)
    assert raw["tool"]["comfy"]["requires-comfyui"].startswith(">=")
    assert "torch" in raw["project"]["dependencies"]
