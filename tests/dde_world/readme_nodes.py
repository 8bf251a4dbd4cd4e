"""The README's node reference, generated from the node schemas (so it cannot drift).

    python tests/dde_world/readme_nodes.py [--write]   # print it, or write it into README.md (needs ComfyUI)

The README holds it between ``<!-- nodes:start -->`` and ``<!-- nodes:end -->``; a test checks
that block equals :func:`render`.
"""

from __future__ import annotations

import os
import sys

START, END = "<!-- nodes:start -->", "<!-- nodes:end -->"


def _type(inp) -> str:
    t = inp.get_io_type()
    if isinstance(t, (list, tuple)):
        t = " or ".join(t)
    if t == "COMFY_MULTITYPED_V3":
        t = " or ".join(x.io_type for x in getattr(inp, "types", [])) or "ANY"
    return str(t)


def _default(inp) -> str:
    d = getattr(inp, "default", None)
    if d is None:
        return "optional" if inp.optional else ""
    if isinstance(d, str):
        return f"`{d}`" if d else "empty"
    return f"`{d}`"


def _cell(text: str) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render(node_classes) -> str:
    by_category: dict[str, list] = {}
    for cls in node_classes:
        schema = cls.GET_SCHEMA()
        by_category.setdefault(schema.category, []).append(schema)
    order = ["sampling", "diffedit", "maps", "visualise", "metrics", "image"]
    rank = lambda c: next((i for i, k in enumerate(order) if c.endswith("/" + k)), len(order))
    out = []
    for category in sorted(by_category, key=lambda c: (rank(c), c)):
        out.append(f"#### {category}\n")
        for s in by_category[category]:
            out.append(f"**{s.display_name}** (`{s.node_id}`) — {s.description}\n")
            out.append("| input | type | default | meaning |")
            out.append("|---|---|---|---|")
            for inp in s.inputs:
                out.append(f"| `{inp.id}` | {_type(inp)} | {_default(inp)} | {_cell(inp.tooltip)} |")
            outs = ", ".join(f"`{o.display_name or o.get_io_type()}` ({o.get_io_type()})" for o in s.outputs)
            out.append(f"\nOutputs: {outs or 'none (output node)'}.\n")
    return "\n".join(out).strip() + "\n"


def readme_block(readme_text: str) -> str | None:
    if START not in readme_text or END not in readme_text:
        return None
    return readme_text.split(START, 1)[1].split(END, 1)[0].strip() + "\n"


def replace_block(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dde_world import locate

    env = locate.comfy_in_process(locate.find_comfyui())
    text = render(env.module("nodes.extension").node_list())
    if "--write" in sys.argv:
        path = os.path.join(locate.PACK_ROOT, "README.md")
        with open(path) as f:
            readme = f.read()
        with open(path, "w") as f:
            f.write(replace_block(readme, START, END, text))
        print(f"updated the node reference in {path}")
    else:
        print(text)
