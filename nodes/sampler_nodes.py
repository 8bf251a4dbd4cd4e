"""Differential Diffusion nodes: the two KSamplers, the MODEL patch and the pixel composite."""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.samplers

from . import sampling
from .core import maps as maps_core
from .core import pixels
from .core.schedule import MODES
from .core.validate import as_latent, check_conditioning
from .ids import CATEGORY, node_id

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def change_map_inputs(default_mode: str = "step") -> list:
    """The inputs every change-map sampler shares: the map and how its values become steps."""
    return [
        io.Mask.Input("change_map", tooltip="Per-pixel change strength, white = change (1), black = keep exactly (0). "
                      "Any size: area-averaged to the latent grid. One map for the batch or one per image."),
        io.Combo.Input("mode", options=list(MODES), default=default_mode,
                       tooltip="How a map value becomes a start step. step: the paper, a value g is sampled for the last "
                       "g x steps. denoise: g starts at the noise level where KSampler with denoise = g starts (same "
                       "meaning on every model family). timestep: the built-in DifferentialDiffusion's threshold on "
                       "model timesteps (for old workflows; grey does little on shifted flow models)."),
        io.Boolean.Input("invert", default=False,
                         tooltip="Polarity. Off: white = change (ComfyUI masks). On: white = keep (maps made for the "
                         "paper's original code)."),
        io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="1 = thresholded mask (the paper). Below 1 mixes in the raw map as a soft mask, like the "
                       "built-in node's strength."),
        io.Float.Input("softness", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="0 = a pixel switches on at its start step. Above 0 it fades in over this fraction of the "
                       "steps before its start step (softer transitions between grey levels)."),
    ]


def _check_sampling_inputs(node: str, positive, negative, latent_image):
    check_conditioning(positive, node, "positive")
    check_conditioning(negative, node, "negative")
    as_latent(latent_image, node)


def _spec(node: str, change_map, mode, invert, strength, softness, scheduler="normal") -> sampling.ChangeMapSpec:
    maps = maps_core.apply_polarity(maps_core.as_maps(change_map, node, "change_map"), invert)
    return sampling.ChangeMapSpec(maps=maps, mode=mode, softness=softness, strength=strength, node=node,
                                  reference=sampling.Reference(scheduler=scheduler))


class DifferentialKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=node_id("DifferentialKSampler"),
            display_name="Differential KSampler",
            category=CATEGORY + "/sampling",
            description="KSampler with a change map: every pixel gets its own denoising strength (Differential "
                        "Diffusion). Pixels at 0 come out exactly as they went in; pixels at 1 are sampled as by KSampler.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising the input latent."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="The random seed used for creating the noise (same as KSampler's)."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="The number of sampling steps."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="The sampling algorithm."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="The noise schedule."),
                io.Conditioning.Input("positive", tooltip="What the changed region should show."),
                io.Conditioning.Input("negative", tooltip="What it should not show."),
                io.Latent.Input("latent_image", tooltip="The latent of the picture to edit."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Overall strength: a map value g changes a pixel like denoise = g x this."),
                *change_map_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent.")],
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                change_map, mode, invert, strength, softness) -> io.NodeOutput:
        _check_sampling_inputs("Differential KSampler", positive, negative, latent_image)
        spec = _spec("Differential KSampler", change_map, mode, invert, strength, softness, scheduler)
        out = sampling.differential_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                           latent_image, spec, denoise=denoise)
        return io.NodeOutput(out)


class DifferentialKSamplerAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=node_id("DifferentialKSamplerAdvanced"),
            display_name="Differential KSampler (Advanced)",
            category=CATEGORY + "/sampling",
            description="KSamplerAdvanced with a change map. The threshold schedule is global over all steps: two "
                        "nodes splitting the steps (base + refiner) give the same result as one pass.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for this part of the steps."),
                io.Combo.Input("add_noise", options=["enable", "disable"],
                               tooltip="enable: start a new run from the input latent. disable: continue a run whose "
                               "earlier part returned leftover noise (the original and its noise travel in the latent)."),
                io.Int.Input("noise_seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                             tooltip="The random seed used for creating the noise."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Total steps of the whole run (all parts)."),
                io.Float.Input("cfg", default=8.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="The sampling algorithm."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="The noise schedule."),
                io.Conditioning.Input("positive", tooltip="What the changed region should show."),
                io.Conditioning.Input("negative", tooltip="What it should not show."),
                io.Latent.Input("latent_image", tooltip="The latent to edit, or the leftover-noise output of an earlier part."),
                io.Int.Input("start_at_step", default=0, min=0, max=10000, tooltip="First step this node samples."),
                io.Int.Input("end_at_step", default=10000, min=0, max=10000, tooltip="Step this node stops at."),
                io.Combo.Input("return_with_leftover_noise", options=["disable", "enable"],
                               tooltip="enable: stop with noise left for a later part to continue."),
                *change_map_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent (or the partly sampled one with leftover noise).")],
        )

    @classmethod
    def execute(cls, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                start_at_step, end_at_step, return_with_leftover_noise, change_map, mode, invert, strength,
                softness) -> io.NodeOutput:
        _check_sampling_inputs("Differential KSampler (Advanced)", positive, negative, latent_image)
        spec = _spec("Differential KSampler (Advanced)", change_map, mode, invert, strength, softness, scheduler)
        out = sampling.differential_sample(
            model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, spec,
            add_noise=add_noise == "enable", start_step=start_at_step, last_step=end_at_step,
            return_with_leftover_noise=return_with_leftover_noise == "enable")
        return io.NodeOutput(out)


class ApplyChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=node_id("ApplyChangeMap"),
            display_name="Apply Change Map to Model",
            category=CATEGORY + "/sampling",
            description="Patch a MODEL so any sampler node (KSampler, SamplerCustomAdvanced, ...) applies this change "
                        "map. The model is cloned; a denoise-mask function already on it keeps working on top.",
            inputs=[
                io.Model.Input("model", tooltip="The model to patch (it is cloned, never modified)."),
                *change_map_inputs(),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="denoise mode only: the scheduler whose KSampler denoise levels the map values "
                               "mean (the patch cannot see which scheduler the sampler node uses)."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @classmethod
    def execute(cls, model, change_map, mode, invert, strength, softness, scheduler) -> io.NodeOutput:
        spec = _spec("Apply Change Map to Model", change_map, mode, invert, strength, softness, scheduler)
        return io.NodeOutput(sampling.patch_model(model, spec))


class CompositeByChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=node_id("CompositeByChangeMap"),
            display_name="Composite Original by Change Map",
            category=CATEGORY + "/image",
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
            ],
            outputs=[io.Image.Output(tooltip="The composite picture.")],
        )

    @classmethod
    def execute(cls, original, edited, change_map, blend, feather, invert) -> io.NodeOutput:
        node = "Composite Original by Change Map"
        maps = maps_core.apply_polarity(maps_core.as_maps(change_map, node, "change_map"), invert)
        return io.NodeOutput(pixels.composite(original, edited, maps, blend, feather, node))


NODES = [DifferentialKSampler, DifferentialKSamplerAdvanced, ApplyChangeMap, CompositeByChangeMap]
