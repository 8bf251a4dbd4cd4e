"""The analytic world as ComfyUI nodes, for a real server (tests, demo). Test support only.

Ids start with ``DDETest_``; the pack itself never registers them.
"""

from __future__ import annotations

import json

import torch
from comfy_api.latest import ComfyExtension, io

from .analytic import AnalyticVAE, AnalyticWorld
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


class AnalyticVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticVAE", display_name="Analytic World VAE", category=CAT,
                         inputs=[], outputs=[io.Vae.Output()])

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(AnalyticVAE(world()))


class AnalyticDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_AnalyticDecode", display_name="Analytic World Decode", category=CAT,
                         inputs=[io.Latent.Input("samples", tooltip="A latent of the analytic world.")],
                         outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        return io.NodeOutput(world().decode(samples["samples"]))


class MakeTensor(io.ComfyNode):
    """Test inputs that no stock node makes: NaN/inf/out-of-range values, odd shapes and batches."""

    FILLS = ["zeros", "ones", "half", "ramp", "random", "nan", "inf", "big", "negative"]

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_MakeTensor", display_name="Make Test Tensor", category=CAT,
                         inputs=[io.String.Input("shape", default="1,64,64", tooltip="Comma-separated shape."),
                                 io.Combo.Input("fill", options=cls.FILLS, tooltip="Values."),
                                 io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="Seed for random.")],
                         outputs=[io.Mask.Output(display_name="mask"), io.Latent.Output(display_name="latent"),
                                  io.Image.Output(display_name="image")])

    @classmethod
    def execute(cls, shape, fill, seed) -> io.NodeOutput:
        dims = [int(v) for v in shape.replace(" ", "").split(",") if v]
        gen = torch.Generator().manual_seed(seed)
        t = {"zeros": lambda: torch.zeros(dims), "ones": lambda: torch.ones(dims), "half": lambda: torch.full(dims, 0.5),
             "ramp": lambda: torch.linspace(0, 1, dims[-1]).expand(*dims).contiguous(),
             "random": lambda: torch.rand(dims, generator=gen), "nan": lambda: torch.full(dims, float("nan")),
             "inf": lambda: torch.full(dims, float("inf")), "big": lambda: torch.full(dims, 7.0),
             "negative": lambda: torch.full(dims, -3.0)}[fill]()
        return io.NodeOutput(t, {"samples": t}, t)


def _stats(x: torch.Tensor, values: bool = True) -> dict:
    x = x.float()
    finite = torch.isfinite(x)
    return {"shape": list(x.shape), "min": float(x[finite].min()) if finite.any() else None,
            "max": float(x[finite].max()) if finite.any() else None, "mean": float(x[finite].mean()) if finite.any() else None,
            "finite": bool(finite.all()), "values": x.flatten().tolist() if values and x.numel() <= 65536 else None}


class LatentReport(io.ComfyNode):
    """Output node: reports a latent's values (and its distance to a scene latent), and optionally a mask's and an
    image's statistics, in the history."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_LatentReport", display_name="Latent Report", category=CAT, is_output_node=True,
                         inputs=[io.Latent.Input("samples", optional=True, tooltip="The latent to report."), _scene_input(),
                                 io.Combo.Input("compare_to", options=["reference", "query"], tooltip="Scene latent to compare with."),
                                 io.Mask.Input("mask", optional=True, tooltip="A mask to report."),
                                 io.Image.Input("image", optional=True, tooltip="An image to report (statistics only).")],
                         outputs=[])

    @classmethod
    def execute(cls, scene, compare_to, samples=None, mask=None, image=None) -> io.NodeOutput:
        report = {}
        if samples is not None:
            x = samples["samples"].float()
            report.update(_stats(x))
            target = world().latent(scene, compare_to)
            if x.shape[1:] == target.shape[1:]:
                report["max_abs_diff"] = float((x - target).abs().max())
        if mask is not None:
            report["mask"] = _stats(mask)
        if image is not None:
            report["image"] = _stats(image, values=False)
        return io.NodeOutput(ui={"dde_report": [json.dumps(report)]})


class DigitsModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_DigitsModel", display_name="Digits Model (learned)", category=CAT,
                         description="The class-conditional eps model trained on scikit-learn's digits (trained on first "
                                     "use, then cached in ~/.cache/dde).",
                         inputs=[], outputs=[io.Model.Output()])

    @classmethod
    def execute(cls) -> io.NodeOutput:
        from . import digits

        return io.NodeOutput(digits.make_model())


class DigitCondition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_DigitCondition", display_name="Digit Class Conditioning", category=CAT,
                         inputs=[io.Int.Input("digit", default=0, min=-1, max=9,
                                              tooltip="The class 0..9; -1 = the null class (unconditional).")],
                         outputs=[io.Conditioning.Output()])

    @classmethod
    def execute(cls, digit) -> io.NodeOutput:
        from . import digits

        return io.NodeOutput(digits.conditioning(None if digit < 0 else digit))


class DigitPicture(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_DigitPicture", display_name="Held-out Digit Picture", category=CAT,
                         inputs=[io.Int.Input("index", default=0, min=0, max=359, tooltip="Index into the held-out split.")],
                         outputs=[io.Image.Output(display_name="image"), io.Int.Output(display_name="digit")])

    @classmethod
    def execute(cls, index) -> io.NodeOutput:
        from . import digits

        x, y, splits = digits.dataset()
        i = splits["test"][index]
        return io.NodeOutput(digits.to_image(x[int(i)].unsqueeze(0)), int(y[int(i)]))


class DigitsEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_DigitsEncode", display_name="Digits Encode", category=CAT,
                         inputs=[io.Image.Input("image", tooltip="16 x 16 pictures.")], outputs=[io.Latent.Output()])

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        from . import digits

        return io.NodeOutput({"samples": digits.encode(image)})


class DigitsDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="DDETest_DigitsDecode", display_name="Digits Decode", category=CAT,
                         inputs=[io.Latent.Input("samples", tooltip="A 4 x 8 x 8 digits latent.")], outputs=[io.Image.Output()])

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        from . import digits

        return io.NodeOutput(digits.decode(samples["samples"]))


NODES = [AnalyticModel, AnalyticCondition, AnalyticLatent, AnalyticVAELoader, AnalyticDecode, MakeTensor, LatentReport,
         DigitsModel, DigitCondition, DigitPicture, DigitsEncode, DigitsDecode]


class TestWorldExtension(ComfyExtension):
    async def get_node_list(self):
        return NODES
