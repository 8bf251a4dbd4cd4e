"""The user documentation stays true: every node has a help page and a README line, every link resolves."""

import glob
import os
import re
from urllib.parse import unquote

from dde_world.locate import PACK_ROOT


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_every_node_has_a_help_page_and_a_readme_line(comfy):
    readme = _read(os.path.join(PACK_ROOT, "README.md"))
    docs = os.path.join(PACK_ROOT, "js", "docs")
    pages = sorted(name for name in os.listdir(docs) if os.path.isfile(os.path.join(docs, name, "en.md")))
    assert pages == comfy.pack_ids        # one help page per node (the layout the frontend asks for), none left over
    assert [n for n in comfy.pack_ids if f"(`{n}`)" not in readme] == []


def test_every_node_is_in_the_menu_category_the_readme_lists_it_under(comfy):
    """The README's node list, heading by heading, is the menu: each node's schema category is its heading, and
    every category is one of the pack's table (``naming.CATEGORIES``), each used by some node."""
    listed, heading = {}, None
    for line in _read(os.path.join(PACK_ROOT, "README.md")).split("## Nodes", 1)[1].split("\n## ", 1)[0].splitlines():
        if re.fullmatch(r"\*\*differential edit/\w+\*\*", line):
            heading = line.strip("*")
        for node_id in re.findall(r"\(`(DDE_\w+)`\)", line):
            listed[node_id] = heading
    actual = {n: comfy.node(n).GET_SCHEMA().category for n in comfy.pack_ids}
    assert listed == actual
    assert sorted(set(actual.values())) == sorted(comfy.module("nodes.naming").CATEGORIES)


def test_links_and_pictures_in_the_docs_exist():
    broken = []
    for doc in [os.path.join(PACK_ROOT, "README.md"), *glob.glob(os.path.join(PACK_ROOT, "docs", "*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", _read(doc)):
            if target.startswith(("http://", "https://")):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(doc), unquote(target)))):
                broken.append(f"{os.path.relpath(doc, PACK_ROOT)} -> {target}")
    assert broken == []


def _schema_input(comfy, node_id, name):
    return next(i for i in comfy.node(node_id).GET_SCHEMA().inputs if i.id == name)


def test_rescale_clip_share_is_the_same_number_in_code_tooltip_and_docs(comfy):
    """``rescale`` clips the top and bottom ``1 - OUTLIER_QUANTILE`` of the pixels: the code, the tooltip, the
    help page and docs/diffedit.md say one number (a help page once said 2 % where the code clipped 8 %)."""
    core = comfy.module("nodes.core.diffedit_math")
    share = round(100 * (1 - core.OUTLIER_QUANTILE), 6)
    texts = {"tooltip": _schema_input(comfy, "DDE_DiffEditMask", "threshold_method").tooltip,
             "help page": _read(os.path.join(PACK_ROOT, "js", "docs", "DDE_DiffEditMask", "en.md")),
             "docs/diffedit.md": _read(os.path.join(PACK_ROOT, "docs", "diffedit.md")),
             "core docstring": core.__doc__}
    said = {name: [float(v) for v in re.findall(r"top and bottom (\d+(?:\.\d+)?) ?%", text)] for name, text in texts.items()}
    assert all(said.values()) and {v for vs in said.values() for v in vs} == {share}, said
    formulas = [float(v) for v in re.findall(r"floor\((0\.\d+) · N\)", texts["help page"])]
    assert formulas == [round(1 - core.OUTLIER_QUANTILE, 6)]


def test_readme_names_the_comfyui_and_frontends_the_tests_run_on(comfy):
    import importlib.metadata

    import comfyui_version

    readme = " ".join(_read(os.path.join(PACK_ROOT, "README.md")).split())
    newest = re.search(r'DDE_EXTRA_FRONTEND:-([0-9.]+)', _read(os.path.join(PACK_ROOT, ".ci", "run"))).group(1)
    assert f"**frontend {newest}**" in readme                          # .ci/run's extra browser tier
    version, front = comfyui_version.__version__, importlib.metadata.version("comfyui-frontend-package")
    assert re.search(rf"v{re.escape(version)}\*\*[^.]*?frontend {re.escape(front)}\)", readme), (version, front)
