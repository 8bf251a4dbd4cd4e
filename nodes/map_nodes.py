"""Change-map construction and operation nodes (thin wrappers over ``core.construct``).

Every node outputs a MASK ``(B,H,W)`` in 0..1, white = change, and shows the map in the node.
"""

from __future__ import annotations

from comfy_api.latest import io

import comfy.model_management

from . import overlays
from .core import construct
from .naming import MAPS, display_name, names_errors

MAX_SIZE = 16384


def map_schema(node_id: str, display_name: str, description: str, inputs: list) -> io.Schema:
    """The schema every map node shares: its inputs, one MASK output named ``change_map``."""
    return io.Schema(node_id=node_id, display_name=display_name, category=MAPS, description=description,
                     inputs=inputs,
                     outputs=[io.Mask.Output(display_name="change_map", tooltip="The change map (white = change).")])


def map_output(cls, maps, picture=None) -> io.NodeOutput:
    """The map, shown in the node over ``picture`` (a reference IMAGE or the input picture) when there is one."""
    base = overlays.picture_for(maps, picture)
    return io.NodeOutput(maps, ui=overlays.overlay_ui(maps, base, label=display_name(cls), kind="map"))


def size_inputs() -> list:
    """Width, height and batch of a new map, or all three from an optional reference."""
    return [
        io.Int.Input("width", default=512, min=1, max=MAX_SIZE, step=1,
                     tooltip="Map width in pixels (ignored when a reference is connected)."),
        io.Int.Input("height", default=512, min=1, max=MAX_SIZE, step=1,
                     tooltip="Map height in pixels (ignored when a reference is connected)."),
        io.Int.Input("batch_size", default=1, min=1, max=4096,
                     tooltip="How many copies of the map (ignored when a reference is connected). Width x height x "
                     "batch_size is at most 268,435,456 pixels (one 16384 x 16384 map); more is an error."),
        io.MultiType.Input("reference", [io.Image, io.Mask], optional=True,
                           tooltip="Optional IMAGE or MASK: the map takes its width, height and batch size."),
    ]


def curve_input() -> io.Combo.Input:
    return io.Combo.Input("curve", options=list(construct.CURVES), default="linear",
                          tooltip="Shape of the transition: linear t, smoothstep 3t^2-2t^3, smootherstep, gamma t^gamma, "
                          "ease-in t^2, ease-out 1-(1-t)^2, ease-in-out (1-cos(pi t))/2.")


def gamma_input() -> io.Float.Input:
    return io.Float.Input("gamma", default=1.0, min=0.01, max=10.0, step=0.01,
                          tooltip="Exponent of the gamma curve (other curves ignore it). Above 1: less change in the "
                          "middle.")


def invert_input(tooltip: str = "Swap white and black (out = 1 - out).") -> io.Boolean.Input:
    return io.Boolean.Input("invert", default=False, tooltip=tooltip)


def centre_inputs() -> list:
    return [
        io.Float.Input("centre_x", default=0.5, min=-1.0, max=2.0, step=0.01,
                       tooltip="Centre, as a fraction of the width (0 = left edge, 1 = right edge)."),
        io.Float.Input("centre_y", default=0.5, min=-1.0, max=2.0, step=0.01,
                       tooltip="Centre, as a fraction of the height (0 = top edge, 1 = bottom edge)."),
    ]


def map_input(name: str = "change_map",
              tooltip: str = "The change map (white = change). Any size, batch aware.") -> io.Mask.Input:
    return io.Mask.Input(name, tooltip=tooltip)


def level_input(name: str, default: float, meaning: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=1.0, step=0.01, tooltip=f"Levels: {meaning}.")


# -- gradients -------------------------------------------------------------------------------------

class LinearGradientMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_LinearGradientMap", "Linear Gradient Change Map",
            "A straight ramp from 0 to 1 across the canvas: t = 0.5 + p/(2L) - offset, p the pixel centre's projection "
            "on the direction, L half the canvas's extent along it.",
            [*size_inputs(),
             io.Float.Input("angle", default=0.0, min=-360.0, max=360.0, step=1.0,
                            tooltip="Direction the map rises towards, in degrees, clockwise on screen: 0 = left to "
                            "right, 90 = top to bottom."),
             io.Float.Input("offset", default=0.0, min=-1.0, max=1.0, step=0.01,
                            tooltip="Slide the ramp forwards by this fraction of its length (t - offset)."),
             curve_input(), gamma_input(), invert_input()])

    @classmethod
    @names_errors
    def execute(cls, width, height, batch_size, angle, offset, curve, gamma, invert, reference=None) -> io.NodeOutput:
        size = construct.canvas(width, height, batch_size, reference)
        return map_output(cls, construct.linear_gradient(size, angle, offset, curve, gamma, invert), reference)


class RadialGradientMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_RadialGradientMap", "Radial Gradient Change Map",
            "1 within the inner radius of the centre, falling to 0 at the outer radius. Radii are fractions of "
            "min(width, height): 0.5 reaches the middle of the shorter sides.",
            [*size_inputs(), *centre_inputs(),
             io.Float.Input("inner_radius", default=0.0, min=0.0, max=4.0, step=0.01,
                            tooltip="Radius of the fully changed disc, as a fraction of min(width, height)."),
             io.Float.Input("outer_radius", default=0.5, min=0.0, max=4.0, step=0.01,
                            tooltip="Radius where the map reaches 0, as a fraction of min(width, height). Must be at "
                            "least inner_radius (equal: a hard disc)."),
             curve_input(), gamma_input(), invert_input()])

    @classmethod
    @names_errors
    def execute(cls, width, height, batch_size, centre_x, centre_y, inner_radius, outer_radius, curve, gamma, invert,
                reference=None) -> io.NodeOutput:
        size = construct.canvas(width, height, batch_size, reference)
        return map_output(cls, construct.radial_gradient(size, centre_x, centre_y, inner_radius, outer_radius, curve,
                                                         gamma, invert), reference)


class AngularGradientMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_AngularGradientMap", "Angular Gradient Change Map",
            "A sweep around a centre: 0 at the start angle, rising clockwise to 1 after a full turn "
            "(t = ((angle - start) mod 360) / 360).",
            [*size_inputs(), *centre_inputs(),
             io.Float.Input("start_angle", default=0.0, min=-360.0, max=360.0, step=1.0,
                            tooltip="Where the sweep starts at 0, in degrees clockwise from the right (90 = down)."),
             io.Boolean.Input("mirror", default=False,
                              tooltip="On: rise to 1 opposite the start angle and fall back (no jump): "
                              "t = 1 - |2t - 1|."),
             curve_input(), gamma_input(), invert_input()])

    @classmethod
    @names_errors
    def execute(cls, width, height, batch_size, centre_x, centre_y, start_angle, mirror, curve, gamma, invert,
                reference=None) -> io.NodeOutput:
        size = construct.canvas(width, height, batch_size, reference)
        return map_output(cls, construct.angular_gradient(size, centre_x, centre_y, start_angle, mirror, curve, gamma,
                                                          invert), reference)


# -- from masks, images, DiffEdit heat -------------------------------------------------------------

class MaskDistanceFalloff(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_MaskDistanceFalloff", "Distance Falloff Change Map",
            "A soft-inpainting map from a hard mask: 1 inside the mask and up to 'inner' px outside it, falling to 0 at "
            "'outer' px (exact Euclidean distance).",
            [map_input("mask", "The hard mask (white = the region to change). Any size, batch aware."),
             io.Float.Input("inner", default=0.0, min=0.0, max=4096.0, step=1.0,
                            tooltip="Distance in pixels outside the mask that still changes fully."),
             io.Float.Input("outer", default=32.0, min=0.0, max=4096.0, step=1.0,
                            tooltip="Distance in pixels where the change reaches 0 (at least inner)."),
             io.Float.Input("threshold", default=0.5, min=0.01, max=1.0, step=0.01,
                            tooltip="Mask values at or above this count as inside the mask."),
             curve_input(), gamma_input(), invert_input()])

    @classmethod
    @names_errors
    def execute(cls, mask, inner, outer, threshold, curve, gamma, invert) -> io.NodeOutput:
        return map_output(cls, construct.distance_falloff(
            mask, inner, outer, threshold, curve, gamma, invert,
            check=comfy.model_management.throw_exception_if_processing_interrupted))


class FeatherChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_FeatherChangeMap", "Feather Change Map",
            "Gaussian feather: out = floor + (1 - floor) * F. Pixels farther than the radius from the mask stay exactly "
            "at floor.",
            [map_input("mask", "The mask or map to feather (white = change)."),
             io.Int.Input("radius", default=8, min=0, max=512,
                          tooltip="Blur radius in pixels (kernel 2 radius + 1, sigma radius / 2)."),
             io.Float.Input("floor", default=0.0, min=0.0, max=1.0, step=0.01,
                            tooltip="Value of the map far from the mask (0 = keep exactly)."),
             io.Combo.Input("mode", options=list(construct.FEATHER_MODES), default="both",
                            tooltip="both: plain blur. outward: max(mask, blur), the mask stays and its edge spreads "
                            "out. inward: min(mask, blur), nothing outside the mask changes.")])

    @classmethod
    @names_errors
    def execute(cls, mask, radius, floor, mode) -> io.NodeOutput:
        return map_output(cls, construct.feather(mask, radius, floor, mode))


class ImageChannelMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_ImageChannelMap", "Change Map from Image",
            "A change map from a picture's luminance (Rec. 709 or Rec. 601 luma of the stored values) or one of its "
            "channels.",
            [io.Image.Input("image", tooltip="The picture to read (white = change unless inverted)."),
             io.Combo.Input("channel", options=list(construct.CHANNELS), default="luminance (Rec. 709)",
                            tooltip="Rec. 709: 0.2126 R + 0.7152 G + 0.0722 B. Rec. 601: 0.299 R + 0.587 G + 0.114 B. "
                            "Or one channel (alpha needs an RGBA image; 1 = opaque)."),
             invert_input("Swap white and black (out = 1 - value).")])

    @classmethod
    @names_errors
    def execute(cls, image, channel, invert) -> io.NodeOutput:
        return map_output(cls, construct.channel_map(image, channel, invert), image)


class DepthChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_DepthChangeMap", "Change Map from Depth",
            "Change by distance from a depth image: nearness t = clamp((d - far_value) / (near_value - far_value), 0, "
            "1), then the curve; 'far' changes the background instead.",
            [io.Image.Input("depth", tooltip="A grey depth image (Depth Anything, MiDaS, Zoe: white = near)."),
             io.Combo.Input("change", options=["near", "far"], default="near",
                            tooltip="near: the foreground changes (out = curve(t)). far: the background changes "
                            "(out = 1 - curve(t))."),
             io.Float.Input("near_value", default=1.0, min=0.0, max=1.0, step=0.01,
                            tooltip="Depth-image value counted as fully near (clip). Swap with far_value for depth "
                            "images where white = far."),
             io.Float.Input("far_value", default=0.0, min=0.0, max=1.0, step=0.01,
                            tooltip="Depth-image value counted as fully far (clip)."),
             curve_input(), gamma_input()])

    @classmethod
    @names_errors
    def execute(cls, depth, change, near_value, far_value, curve, gamma) -> io.NodeOutput:
        return map_output(cls, construct.depth_map(depth, near_value, far_value, change, curve, gamma))


class SemanticChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_SemanticChangeMap", "Semantic Change Map",
            "Edit strength that follows how much each region relates to the prompt: out = floor + (ceiling - floor) * "
            "heat ^ gamma, from a DiffEdit heat map (any MASK in 0..1).",
            [map_input("heat", "The DiffEdit heat map (or any MASK): 1 = most related to the edit."),
             io.Float.Input("floor", default=0.0, min=0.0, max=1.0, step=0.01,
                            tooltip="Strength where the heat is 0 (0 = keep unrelated regions exactly)."),
             io.Float.Input("ceiling", default=1.0, min=0.0, max=1.0, step=0.01,
                            tooltip="Strength where the heat is 1."),
             io.Float.Input("gamma", default=1.0, min=0.01, max=10.0, step=0.01,
                            tooltip="Exponent on the heat: above 1 concentrates the change on the hottest regions, "
                            "below 1 spreads it."),
             io.Boolean.Input("normalize", default=False,
                              tooltip="Divide each heat map by its own maximum first (so its peak reaches 1).")])

    @classmethod
    @names_errors
    def execute(cls, heat, floor, ceiling, gamma, normalize) -> io.NodeOutput:
        return map_output(cls, construct.semantic_map(heat, floor, ceiling, gamma, normalize))


# -- operations ------------------------------------------------------------------------------------

class CombineChangeMaps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_CombineChangeMaps", "Combine Change Maps",
            "Combine two maps pixel by pixel (map_b is resized to map_a; one map broadcasts over the other's batch). "
            "Results are clamped to 0..1.",
            [map_input("map_a", "First map; the output has its size."),
             map_input("map_b", "Second map (resized to map_a's size)."),
             io.Combo.Input("operation", options=list(construct.COMBINE_OPS), default="max",
                            tooltip="min, max, multiply a*b, add min(a+b, 1), subtract max(a-b, 0), screen "
                            "1-(1-a)(1-b), lerp a(1-factor) + b factor."),
             io.Float.Input("factor", default=0.5, min=0.0, max=1.0, step=0.01,
                            tooltip="lerp only: 0 = map_a, 1 = map_b.")])

    @classmethod
    @names_errors
    def execute(cls, map_a, map_b, operation, factor) -> io.NodeOutput:
        return map_output(cls, construct.combine(map_a, map_b, operation, factor))


class ChangeMapCurves(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_ChangeMapCurves", "Change Map Curves",
            "Levels and curve: out = out_low + (out_high - out_low) * curve(clamp((m - in_low) / (in_high - in_low), 0, "
            "1)).",
            [map_input(), curve_input(), gamma_input(),
             level_input("in_low", 0.0, "map values at or below this become out_low"),
             level_input("in_high", 1.0, "map values at or above this become out_high (equal to in_low: a hard "
                                         "threshold, above in_low = out_high)"),
             level_input("out_low", 0.0, "the output's lowest value"),
             level_input("out_high", 1.0, "the output's highest value (below out_low inverts)")])

    @classmethod
    @names_errors
    def execute(cls, change_map, curve, gamma, in_low, in_high, out_low, out_high) -> io.NodeOutput:
        return map_output(cls, construct.levels(change_map, in_low, in_high, out_low, out_high, curve, gamma))


class QuantizeChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_QuantizeChangeMap", "Quantize Change Map",
            "Round to N evenly spaced levels: out = floor(m (N - 1) + 0.5) / (N - 1).",
            [map_input(),
             io.Int.Input("levels", default=5, min=2, max=1024,
                          tooltip="Number of levels N (at least 2): 0, 1/(N-1), ..., 1.")])

    @classmethod
    @names_errors
    def execute(cls, change_map, levels) -> io.NodeOutput:
        return map_output(cls, construct.quantize(change_map, levels))


class InvertChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_InvertChangeMap", "Invert Change Map (Polarity)",
            "out = 1 - m. Converts between the paper's maps (white = keep) and ComfyUI's (white = change).",
            [map_input(tooltip="The map to invert (either polarity).")])

    @classmethod
    @names_errors
    def execute(cls, change_map) -> io.NodeOutput:
        return map_output(cls, construct.invert(change_map))


class StabilizeChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return map_schema(
            "DDE_StabilizeChangeMap", "Stabilize Change Map",
            "Snap values within epsilon of 0 to exactly 0 and within epsilon of 1 to exactly 1 (maps saved as JPEG or "
            "painted at 98% opacity otherwise never reach 'keep exactly' or 'change fully').",
            [map_input(),
             io.Float.Input("epsilon", default=0.02, min=0.0, max=0.49, step=0.001,
                            tooltip="m <= epsilon becomes 0, m >= 1 - epsilon becomes 1 (0.02 covers about 5/255).")])

    @classmethod
    @names_errors
    def execute(cls, change_map, epsilon) -> io.NodeOutput:
        return map_output(cls, construct.stabilize(change_map, epsilon))


NODES = [LinearGradientMap, RadialGradientMap, AngularGradientMap, MaskDistanceFalloff, FeatherChangeMap,
         ImageChannelMap, DepthChangeMap, SemanticChangeMap, CombineChangeMaps, ChangeMapCurves, QuantizeChangeMap,
         InvertChangeMap, StabilizeChangeMap]
