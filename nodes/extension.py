"""The ComfyExtension that lists every node of the pack (imported by ComfyUI only)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import (diffedit_nodes, edit_nodes, examples, map_nodes, metrics_nodes, sampler_nodes, several_edits_nodes,
               visual_nodes)


def node_list() -> list[type[io.ComfyNode]]:
    return [*sampler_nodes.NODES, *diffedit_nodes.NODES, *several_edits_nodes.NODES, *map_nodes.NODES,
            *metrics_nodes.NODES, *visual_nodes.NODES, *edit_nodes.NODES]


class DifferentialEditExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        examples.install_example_inputs()   # the example workflows run on their first Run
        return node_list()
