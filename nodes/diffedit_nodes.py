"""DiffEdit nodes: automatic mask, mask-guided edit, and the edit as a SAMPLER."""

from __future__ import annotations

from comfy_api.latest import io

import comfy.samplers

from . import diffedit_sampling, messages, overlays
from .core import diffedit_math as core
from .core import maps as maps_core
from .core import pixels, visual
from .core.errors import InputError
from .core.validate import check_conditioning
from .inputs import estimation_inputs
from .latent_space import model_latent, pixels_per_cell
from .naming import DIFFEDIT, display_name, names_errors, search_aliases


class DiffEditMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DiffEditMask",
            display_name="DiffEdit Mask",
            category=DIFFEDIT,
            **search_aliases("auto mask", "automatic mask", "prompt mask", "diffedit", "semantic mask"),
            description="Find where an edit should happen (DiffEdit): noise the picture, compare what the model predicts "
                        "for the query and for the reference over n noise draws, threshold the difference.",
            inputs=[
                io.Model.Input("model", tooltip="Any diffusion model (eps, v or flow); its patches and wrappers apply."),
                io.Conditioning.Input("query", tooltip="The edit prompt: what the picture should show."),
                io.Latent.Input("latent", tooltip="The latent of the picture (or video) to edit (VAE Encode)."),
                *estimation_inputs(),
                io.Conditioning.Input("reference", optional=True,
                                      tooltip="What the picture shows now. Not connected: the query zeroed out (unconditional)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Unconditional branch when cfg != 1. Not connected: the query zeroed out."),
                io.Image.Input("image", optional=True,
                               tooltip="The picture itself: sets the output size and is shown under the preview. "
                               "Not connected: the model's picture pixels per latent cell (8 for SD and Flux, 16 "
                               "for Flux.2, 1 in pixel space), grey preview."),
                io.Int.Input("temporal_smooth", default=0, min=0, max=64, optional=True,
                             tooltip="Video latents: Gaussian smoothing of the differences over this many latent frames "
                             "on each side before thresholding (0 = each frame on its own). Masks come one per latent frame."),
            ],
            outputs=[
                io.Mask.Output(display_name="heat", tooltip="Soft map 0..1 of how much the prompts disagree."),
                io.Mask.Output(display_name="mask", tooltip="Binary mask of what the edit should touch (white)."),
                io.Image.Output(display_name="preview", tooltip="The heat map over the picture with the mask outline."),
                io.Float.Output(display_name="mask_area", tooltip="Fraction of the picture inside the mask (0..1, batch mean)."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, model, query, latent, strength, n, seed, cfg, threshold_method, threshold, clamp_ratio, percentile,
                smooth, grow, batch_size, reference=None, negative=None, image=None, temporal_smooth=0) -> io.NodeOutput:
        samples = model_latent(model, latent, "latent")
        query = check_conditioning(query, "query")
        reference = check_conditioning(reference, "reference", optional=True)
        negative = check_conditioning(negative, "negative", optional=True)
        if threshold_method not in core.METHODS:
            raise InputError("threshold_method", f"one of {core.METHODS}", repr(threshold_method))
        base = None
        if image is not None:
            base = pixels.as_images(image, "image")
            size = tuple(base.shape[1:3])
        else:
            scale = pixels_per_cell(model)   # the picture's size when none is connected
            size = (samples.shape[-2] * scale, samples.shape[-1] * scale)
        diff = diffedit_sampling.estimate_heat(model, query, reference, latent, strength, n, seed, cfg, negative, batch_size)
        # a video's diff is (B,T,h,w): one heat and mask per latent frame, (B*T,H,W)
        heat, mask = core.heat_and_mask(diff, size, threshold_method, threshold, clamp_ratio, percentile, smooth, grow,
                                        temporal_smooth)
        if base is not None:
            base = maps_core.match_batch(base, heat.shape[0], "image")
        shown = visual.heat_preview(heat, mask, base)
        stats = core.mask_stats(heat, mask)
        node = display_name(cls)
        warnings = messages.coverage(node, "mask", mask, identical=messages.same_conditioning(query, reference) or bool(diff.max() <= 0))
        if base is not None:   # the heat of the latent grid is stretched onto a picture of another aspect ratio
            warnings = messages.stretch(node, "image", heat, samples.shape, what="the picture",
                                        fitted="the heat and the mask are stretched onto it",
                                        advice="Connect the picture the latent was encoded from.") + warnings
        ui = overlays.messages_ui(warnings, overlays.overlay_ui(heat, base, label="DiffEdit heat: " + core.stats_text(stats),
                                                               kind="heat"))
        return io.NodeOutput(heat, mask, shown, float(stats["area"].mean()), ui=ui)


def edit_mask_input() -> io.Mask.Input:
    return io.Mask.Input("mask", tooltip="Where to edit (white), e.g. from DiffEdit Mask. Any size: area-averaged to the "
                         "latent grid; grey values blend. Video latents: 1 mask, one per latent frame, or batch x frames.")


def inversion_inputs() -> list:
    """How the edit inverts the picture: refinement, mask polarity, and the inversion's conditioning."""
    return [
        io.Int.Input("refine", default=2, min=0, max=20,
                     tooltip="Fixed-point iterations per inversion step (1 extra model call each): more = decoding "
                     "reproduces the unedited picture more exactly."),
        io.Boolean.Input("invert", default=False, tooltip="On: the mask is white = keep."),
        io.Conditioning.Input("reference", optional=True,
                              tooltip="Conditioning for the inversion (what the picture shows now). Not connected: zeroed "
                              "(unconditional)."),
    ]


class DiffEditEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DiffEditEdit",
            display_name="DiffEdit Edit",
            category=DIFFEDIT,
            **search_aliases("diffedit", "masked edit", "inversion edit", "prompt edit"),
            description="DiffEdit's edit: invert the picture deterministically to the encode ratio with the reference, "
                        "then decode with the query, keeping everything outside the mask on the inverted path. "
                        "Outside the mask the latent comes back unchanged.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model."),
                io.Conditioning.Input("query", tooltip="What the masked region should show."),
                io.Latent.Input("latent", tooltip="The latent of the picture (or video) to edit."),
                edit_mask_input(),
                io.Int.Input("steps", default=50, min=1, max=10000,
                             tooltip="Decode steps (KSampler semantics with denoise = encode_ratio: the last 'steps' of a "
                             "schedule of steps / encode_ratio). The inversion takes as many, times 1 + refine model calls."),
                io.Float.Input("encode_ratio", default=0.8, min=0.01, max=1.0, step=0.01,
                               tooltip="How far to invert, like KSampler's denoise (diffusers' inpaint_strength: 0.8)."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, tooltip="Guidance for the decode."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="Noise schedule (the steps are deterministic DDIM steps)."),
                *inversion_inputs(),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt for the decode. Not connected: zeroed."),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent.")],
        )

    @classmethod
    @names_errors
    def execute(cls, model, query, latent, mask, steps, encode_ratio, cfg, scheduler, refine, invert, reference=None,
                negative=None) -> io.NodeOutput:
        model_latent(model, latent, "latent")
        query = check_conditioning(query, "query")
        reference = check_conditioning(reference, "reference", optional=True)
        negative = check_conditioning(negative, "negative", optional=True)
        maps = maps_core.read_change_map(mask, invert, "mask")
        node = display_name(cls)
        warnings = messages.stretch(node, "mask", maps, latent["samples"].shape) + messages.coverage(node, "mask", maps)
        out = diffedit_sampling.edit(model, query, reference, negative, latent, maps, steps, encode_ratio, cfg, scheduler, refine)
        return io.NodeOutput(out, ui=overlays.messages_ui(warnings))


class DiffEditSamplerNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DiffEditSampler",
            display_name="DiffEdit Sampler",
            category=DIFFEDIT,
            **search_aliases("diffedit", "inversion sampler"),
            description="DiffEdit as a SAMPLER for SamplerCustomAdvanced: inverts the input latent along the given sigmas "
                        "(use DisableNoise, and a scheduler with denoise = encode ratio), then decodes with the guider, "
                        "keeping the unmasked region on the inverted path.",
            inputs=[edit_mask_input(), *inversion_inputs()],
            outputs=[io.Sampler.Output(tooltip="Connect to SamplerCustomAdvanced's sampler input.")],
        )

    @classmethod
    @names_errors
    def execute(cls, mask, refine, invert, reference=None) -> io.NodeOutput:
        reference = check_conditioning(reference, "reference", optional=True)
        maps = maps_core.read_change_map(mask, invert, "mask")
        return io.NodeOutput(diffedit_sampling.DiffEditSampler(maps, reference, refine, node=display_name(cls)))


NODES = [DiffEditMask, DiffEditEdit, DiffEditSamplerNode]
