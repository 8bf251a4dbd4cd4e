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


def test_links_and_pictures_in_the_docs_exist():
    broken = []
    for doc in [os.path.join(PACK_ROOT, "README.md"), *glob.glob(os.path.join(PACK_ROOT, "docs", "*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", _read(doc)):
            if target.startswith(("http://", "https://")):
                continue
            if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(doc), unquote(target)))):
                broken.append(f"{os.path.relpath(doc, PACK_ROOT)} -> {target}")
    assert broken == []
