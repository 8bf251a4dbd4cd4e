"""The README stays true: its node reference is the schemas', its pictures exist, every node has a help page."""

import os
import re

from dde_world import readme_nodes
from dde_world.locate import PACK_ROOT


def _readme():
    with open(os.path.join(PACK_ROOT, "README.md")) as f:
        return f.read()


def test_node_reference_matches_the_schemas(comfy):
    block = readme_nodes.readme_block(_readme())
    expected = readme_nodes.render(comfy.module("nodes.extension").node_list())
    assert block == expected, "README node reference is stale: run python tests/dde_world/readme_nodes.py --write"
    for node_id in comfy.pack_ids:
        assert f"(`{node_id}`)" in block


def test_every_node_has_a_help_page(comfy):
    missing = [n for n in comfy.pack_ids if not os.path.isfile(os.path.join(PACK_ROOT, "js", "docs", n, "en.md"))]
    assert missing == []


def test_readme_pictures_and_links_exist():
    text = _readme()
    targets = re.findall(r"\]\(((?:workflows|js|benchmarks|tests|nodes)/[^)#\s]+)\)", text)
    assert targets
    missing = [t for t in targets if not os.path.exists(os.path.join(PACK_ROOT, t))]
    assert missing == []


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_command():
    text = _readme()
    assert "bash .ci/demo" in text and "bash .ci/run" in text
    with open(os.path.join(PACK_ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert "-m pytest" in ci
