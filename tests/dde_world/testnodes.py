"""The analytic world as ComfyUI nodes, for a real server (tests, demo). Test support only.

Ids start with ``DDETest_``; the pack itself never registers them.
"""

from __future__ import annotations

import json

import torch
from comfy_api.latest import ComfyExtension, io

from .analytic import AnalyticWorld
from .comfy_world import FAMILIES, conditioning, make_model

CAT = "differential edit/testing"
_WORLD = None


def world() -> AnalyticWorld:
    global _WORLD
    if _WORLD is None:
        _WORLD = AnalyticWorld()
    return _WORLD


def _scene_input():
    return io.Int.Input("scene", default=0, min=0, max=3, tooltip="Which synthetic scene (0..3).")


class AnalyticModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticModel", display_name="Analytic World Model", category=CAT,
                         inputs=[io.Combo.Input("family", options=list(FAMILIES), tooltip="eps, v or rectified flow.")],
                         outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, family) -> io.NodeOutput:
        return io.NodeOutput(make_model(world(), family))


class AnalyticCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticCondition", display_name="Analytic World Condition", category=CAT,
                         inputs=[_scene_input(), io.Combo.Input("role", options=list(AnalyticWorld.ROLES),
                                                                 tooltip="Which condition of the scene.")],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, scene, role) -> io.NodeOutput:
        w = world()
        return io.NodeOutput(conditioning(w, w.role_id(scene, role)))


class AnalyticLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticLatent", display_name="Analytic World Latent", category=CAT,
                         inputs=[_scene_input(), io.Combo.Input("role", options=["reference", "query"], tooltip="Which latent."),
                                 io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Copies in the batch.")],
                         outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, scene, role, batch_size) -> io.NodeOutput:
        return io.NodeOutput({"samples": world().latent(scene, role).repeat(batch_size, 1, 1, 1)})


class AnalyticDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticDecode", display_name="Analytic World Decode", category=CAT,
                         inputs=[io.Latent.Input("samples", tooltip="A latent of the analytic world.")],
                         outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        return io.NodeOutput(world().decode(samples["samples"]))


class LatentReport(io.ComfyNode):
    """Output node: reports a latent's values (and its distance to a scene latent) in the history."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_LatentReport", display_name="Latent Report", category=CAT, is_output_node=True,
                         inputs=[io.Latent.Input("samples", tooltip="The latent to report."), _scene_input(),
                                 io.Combo.Input("compare_to", options=["reference", "query"], tooltip="Scene latent to compare with.")],
                         outputs=[])

    @classmethod
    def execute(cls, samples, scene, compare_to) -> io.NodeOutput:
        x = samples["samples"].float()
        target = world().latent(scene, compare_to)
        report = {"shape": list(x.shape), "max_abs_diff": float((x - target).abs().max()),
                  "mean": float(x.mean()), "values": x.flatten().tolist() if x.numel() <= 65536 else None}
        return io.NodeOutput(ui={"dde_report": [json.dumps(report)]})


NODES = [AnalyticModel, AnalyticCondition, AnalyticLatent, AnalyticDecode, LatentReport]


class TestWorldExtension(ComfyExtension):
    async def get_node_list(self):
        return NODES
