"""The adherence-metrics node (a thin wrapper over ``core.metrics``)."""

from __future__ import annotations

from comfy_api.latest import io

from . import overlays
from .core import metrics
from .naming import METRICS, names_errors

_HELP = {
    "correlation": "Pearson correlation of requested strength and realized change over the pixels (CAM-like; higher "
                   "is better, NaN for a uniform map).",
    "spearman": "Spearman rank correlation of requested strength and realized change (higher is better).",
    "distance": "Mean |calibrated realized change - requested strength| in map units (DAM-like; lower is better).",
    "leakage": "Mean realized change (mean |RGB difference|) where the map is 0 (lower is better; NaN if none).",
    "leakage_max": "Largest realized change where the map is 0.",
    "seam": "Excess change gradient on the map's contours minus elsewhere (lower is better).",
    "mean_change": "Mean realized change; with a uniform map of strength s, (s, mean_change) is a calibration pair.",
}


class ChangeMapAdherence(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_ChangeMapAdherence",
            display_name="Change Map Adherence",
            category=METRICS,
            description="How closely an edit follows its change map, from pixels only: correlation of requested and "
                        "realized change, calibrated distance, leakage into keep pixels and seams on the map's "
                        "contours. Computed on the change map's grid; outputs are batch means.",
            inputs=[
                io.Image.Input("original", tooltip="The picture before editing."),
                io.Image.Input("result", tooltip="The edited picture (same size as the original)."),
                io.Mask.Input("change_map", tooltip="The change map used for the edit (white = change). The metrics "
                              "are computed at its resolution."),
                io.Int.Input("smooth", default=0, min=0, max=64,
                             tooltip="Gaussian smoothing radius (map pixels) of the realized change before measuring; "
                             "suppresses texture noise."),
                io.Boolean.Input("invert", default=False, tooltip="On: the map is white = keep."),
                io.String.Input("calibration", default="", multiline=True, optional=True,
                                tooltip="Uniform-map sweep as 'strength:mean_change' pairs, e.g. '0:0, 0.5:0.04, "
                                "1:0.12' (measure each with a uniform map and read mean_change). Empty: a monotone "
                                "least-squares normalisation is used and the report says so."),
            ],
            outputs=[
                *(io.Float.Output(display_name=k, tooltip=_HELP[k]) for k in metrics.METRICS),
                io.String.Output(display_name="report",
                                 tooltip="A table of every metric per image and the batch mean."),
                io.Mask.Output(display_name="realized_change",
                               tooltip="Realized change in map units (after calibration), on the map's grid."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, original, result, change_map, smooth, invert, calibration="") -> io.NodeOutput:
        res = metrics.adherence(original, result, change_map, calibration, smooth, invert)
        values = [metrics.summary(res[k]) for k in metrics.METRICS]
        realized = res["calibrated"]
        ui = overlays.overlay_ui(realized, base=result, label="realized change", kind="map")
        return io.NodeOutput(*values, metrics.report(res), realized, ui=ui)


NODES = [ChangeMapAdherence]
