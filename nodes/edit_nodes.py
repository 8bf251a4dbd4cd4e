"""Nodes around an edit in pixel space: the change map of a before/after pair (mask-free editors), and the
composite that puts the original pixels back where a change map is 0."""

from __future__ import annotations

from comfy_api.latest import io

from . import messages, overlays
from .core import edits, register
from .core import maps as maps_core
from .core import pixels
from .naming import IMAGE, MAPS, display_name, names_errors, search_aliases


class ChangeMapFromEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_ChangeMapFromEdit",
            display_name="Change Map from Edit",
            category=MAPS,
            **search_aliases("edit composite", "difference mask", "change detection", "what changed"),
            description="What a mask-free editor (instruction editor, img2img) changed: a perceptual (CIELAB) "
                        "difference of the picture before and after, after matching the editor's global colour "
                        "shift. Feed it to Composite Original by Change Map to keep everything else pixel-exact, or "
                        "to a Differential KSampler to re-sample the edited region with a soft border.",
            inputs=[
                io.Image.Input("before", tooltip="The picture before the edit (the map has its size)."),
                io.Image.Input("after", tooltip="The edited picture (resized to 'before' if its size differs)."),
                io.Combo.Input("color_match", options=list(edits.MATCH), default="affine",
                               tooltip="Undo the editor's global colour/brightness shift first, fitted on the pixels "
                               "it did not change. affine: per-channel gain and offset (least squares). mean/std: "
                               "per-channel mean and spread. none: compare as they are."),
                io.Float.Input("noise_floor", default=6.0, min=0.0, max=100.0, step=0.5,
                               tooltip="CIELAB difference (dE76, after a 3x3 median) at or below which a pixel counts "
                               "as unchanged (map 0). About 1 is just noticeable; raise for noisy or compressed "
                               "pictures."),
                io.Float.Input("full_change", default=15.0, min=0.0, max=200.0, step=0.5,
                               tooltip="Difference at or above which the map is 1 (at least noise_floor; equal: a hard "
                               "cut)."),
                io.Int.Input("grow", default=0, min=-256, max=256,
                             tooltip="Pixels to grow (positive) or shrink (negative) the changed region by."),
                io.Int.Input("softness", default=0, min=0, max=256,
                             tooltip="Blur radius in pixels of the soft map's border (the binary mask stays sharp). "
                             "Nothing farther than this from a change becomes non-zero."),
                io.Combo.Input("align", options=list(register.ALIGN), default="similarity", optional=True,
                               tooltip="Undo the editor's geometry before comparing: instruction editors redraw the "
                               "picture a few pixels off, zoomed or at another size. similarity: shift, scale and "
                               "rotation; shift: shift only; off: compare as they are. Fitted on the pictures' "
                               "structure (colour-shift free, the edited region left out); a fit that moves no pixel "
                               "by 0.2 px or more changes nothing. The fit is shown on the node. A prompt saved without "
                               "this input runs as similarity."),
            ],
            outputs=[
                io.Mask.Output(display_name="change_map", tooltip="Soft change map (white = changed)."),
                io.Mask.Output(display_name="mask", tooltip="Binary mask: soft value before blurring >= 0.5."),
                io.Image.Output(display_name="aligned", tooltip="The edited picture registered onto 'before' (its "
                                "size, the editor's shift and zoom undone; where the editor's frame does not reach, "
                                "'before'). Composite it, not 'after', when the editor moved the picture."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, before, after, color_match, noise_floor, full_change, grow, softness,
                align="similarity") -> io.NodeOutput:
        found = edits.edit_change(before, after, color_match, noise_floor, full_change, grow, softness, align)
        name = display_name(cls)
        label = name if align == "off" else f"{name}: {found.transforms[0].text()}"
        warnings = messages.registration(name, found, align)
        ui = overlays.messages_ui(warnings, overlays.overlay_ui(found.change_map, base=before, label=label, kind="map"))
        return io.NodeOutput(found.change_map, found.mask, found.aligned, ui=ui)


class CompositeByChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_CompositeByChangeMap",
            display_name="Composite Original by Change Map",
            category=IMAGE,
            **search_aliases("paste back", "soft inpainting composite", "composite original", "mask composite"),
            description="After VAE decode: put the original pixels back where the map is 0 (the VAE round trip "
                        "otherwise blurs them), blending by the map elsewhere.",
            inputs=[
                io.Image.Input("original", tooltip="The picture before editing."),
                io.Image.Input("edited", tooltip="The decoded result of the differential sampler."),
                io.Mask.Input("change_map", tooltip="The change map used for sampling (white = change)."),
                io.Combo.Input("blend", options=["map", "changed"], default="map",
                               tooltip="map: the edited picture shows through by the map value. changed: fully wherever "
                               "the map is above 0, feathered inside that region."),
                io.Int.Input("feather", default=0, min=0, max=256,
                             tooltip="Blur radius in pixels for the blend weights (never reaches pixels where the map is 0)."),
                io.Boolean.Input("invert", default=False, tooltip="On: the map is white = keep."),
                io.Float.Input("difference_threshold", default=0.0, min=0.0, max=2.0, step=0.01, optional=True,
                               tooltip="A1111 soft inpainting: pixels the edit changed by at most this (RGB distance, "
                               "0..1 values) come back as the original exactly; above it the map blend fades in. "
                               "0 = off (plain map blend)."),
                io.Float.Input("difference_contrast", default=2.0, min=0.0, max=8.0, step=0.25, optional=True,
                               tooltip="A1111: how sharply the blend rises above the threshold (it reaches half at "
                               "twice the threshold)."),
                io.Float.Input("mask_influence", default=0.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="A1111: how much the map scales the threshold (1: low map values snap back "
                               "sooner, map 1 never snaps back)."),
            ],
            outputs=[io.Image.Output(tooltip="The composite picture.")],
        )

    @classmethod
    @names_errors
    def execute(cls, original, edited, change_map, blend, feather, invert, difference_threshold=0.0,
                difference_contrast=2.0, mask_influence=0.0) -> io.NodeOutput:
        maps = maps_core.read_change_map(change_map, invert)
        return io.NodeOutput(pixels.composite(original, edited, maps, blend, feather, difference_threshold,
                                              difference_contrast, mask_influence))


NODES = [ChangeMapFromEdit, CompositeByChangeMap]
