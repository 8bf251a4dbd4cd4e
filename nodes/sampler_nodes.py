"""Differential Diffusion nodes: the two KSamplers and the MODEL patch."""

from __future__ import annotations

from comfy_api.latest import io

import comfy.samplers

from . import differential_sampling, hooks, messages, overlays
from .core.validate import check_conditioning
from .latent_space import fitted_latent
from .naming import SAMPLING, display_name, names_errors, search_aliases
from .plan import ChangeMap, PlanKey, Reference
from .inputs import (cfg_input, change_map_inputs, few_step_and_prefill_inputs, prompt_inputs, sampler_scheduler_inputs,
                     seed_input, steps_input)

def _check_sampling_inputs(positive, negative):
    check_conditioning(positive, "positive")
    check_conditioning(negative, "negative")


def _key_and_messages(node: str, change_map: ChangeMap, model, latent_image: dict, steps: int, sampler_name: str,
             scheduler: str, denoise: float = 1.0):
    """The run's key and plan (made once: the node's messages and its run share it), and what the node says."""
    samples = fitted_latent(model, latent_image, "latent_image")   # the latent the sampler sees
    key = PlanKey.for_ksampler(model, samples.shape, steps, sampler_name, scheduler, denoise,
                               latent_image.get("noise_mask"))
    planned = change_map.plan(model, key)
    warnings = (messages.stretch(node, "change_map", change_map.maps, key.latent_shape)
                + messages.sampler_levels(node, change_map, planned))
    return key, warnings


class DifferentialKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DifferentialKSampler",
            display_name="Differential KSampler",
            category=SAMPLING,
            **search_aliases("differential diffusion", "soft inpainting", "variable denoise", "per-pixel denoise", "gradient mask inpaint"),
            description="KSampler with a change map: every pixel gets its own denoising strength (Differential "
                        "Diffusion). Pixels at 0 come out exactly as they went in; pixels at 1 are sampled as by KSampler.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising the input latent."),
                seed_input(),
                steps_input(),
                cfg_input(),
                *sampler_scheduler_inputs(),
                *prompt_inputs(),
                io.Latent.Input("latent_image", tooltip="The latent of the picture to edit."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Overall strength: a map value g changes a pixel like denoise = g x this."),
                *change_map_inputs(),
                *few_step_and_prefill_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent.")],
        )

    @classmethod
    @names_errors
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                change_map, mode, invert, strength, softness, fractional=False, prefill="original",
                prefill_above=0.5) -> io.NodeOutput:
        _check_sampling_inputs(positive, negative)
        node = display_name(cls)
        cmap = ChangeMap.read(change_map, mode, invert, strength, softness, fractional, prefill, prefill_above, node)
        key, warnings = _key_and_messages(node, cmap, model, latent_image, steps, sampler_name, scheduler, denoise)
        out = differential_sampling.differential_sample(model, seed, cfg, positive, negative, latent_image, cmap, key)
        return io.NodeOutput(out, ui=overlays.messages_ui(warnings))


class DifferentialKSamplerAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DifferentialKSamplerAdvanced",
            display_name="Differential KSampler (Advanced)",
            category=SAMPLING,
            **search_aliases("differential diffusion advanced", "soft inpainting", "variable denoise", "refiner split"),
            description="KSamplerAdvanced with a change map. The threshold schedule is global over all steps: two "
                        "nodes splitting the steps (base + refiner) give the same result as one pass.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for this part of the steps."),
                io.Combo.Input("add_noise", options=["enable", "disable"],
                               tooltip="enable: start a new run from the input latent. disable: continue a run whose "
                               "earlier part returned leftover noise (the original and its noise travel in the latent)."),
                seed_input("noise_seed"),
                steps_input("Total steps of the whole run (all parts)."),
                cfg_input(),
                *sampler_scheduler_inputs(),
                *prompt_inputs(),
                io.Latent.Input("latent_image", tooltip="The latent to edit, or the leftover-noise output of an earlier part."),
                io.Int.Input("start_at_step", default=0, min=0, max=10000, tooltip="First step this node samples."),
                io.Int.Input("end_at_step", default=10000, min=0, max=10000, tooltip="Step this node stops at."),
                io.Combo.Input("return_with_leftover_noise", options=["disable", "enable"],
                               tooltip="enable: stop with noise left for a later part to continue."),
                *change_map_inputs(),
                *few_step_and_prefill_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="The edited latent (or the partly sampled one with leftover noise).")],
        )

    @classmethod
    @names_errors
    def execute(cls, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                start_at_step, end_at_step, return_with_leftover_noise, change_map, mode, invert, strength,
                softness, fractional=False, prefill="original", prefill_above=0.5) -> io.NodeOutput:
        _check_sampling_inputs(positive, negative)
        node = display_name(cls)
        cmap = ChangeMap.read(change_map, mode, invert, strength, softness, fractional, prefill, prefill_above, node)
        key, warnings = _key_and_messages(node, cmap, model, latent_image, steps, sampler_name, scheduler)
        out = differential_sampling.differential_sample(
            model, noise_seed, cfg, positive, negative, latent_image, cmap, key, add_noise=add_noise == "enable",
            start_step=start_at_step, last_step=end_at_step,
            return_with_leftover_noise=return_with_leftover_noise == "enable")
        return io.NodeOutput(out, ui=overlays.messages_ui(warnings))


class ApplyChangeMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_ApplyChangeMap",
            display_name="Apply Change Map to Model",
            category=SAMPLING,
            **search_aliases("differential diffusion", "soft inpainting", "variable denoise", "denoise mask"),
            description="Patch a MODEL so any sampler node (KSampler, SamplerCustomAdvanced, ...) applies this change "
                        "map. The model is cloned; a denoise-mask function already on it keeps working on top.",
            inputs=[
                io.Model.Input("model", tooltip="The model to patch (it is cloned, never modified)."),
                *change_map_inputs(),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="normal",
                               tooltip="denoise mode only: the scheduler whose KSampler denoise levels the map values "
                               "mean (the patch cannot see which scheduler the sampler node uses)."),
                *few_step_and_prefill_inputs(),
            ],
            outputs=[io.Model.Output(tooltip="The patched model.")],
        )

    @classmethod
    @names_errors
    def execute(cls, model, change_map, mode, invert, strength, softness, scheduler, fractional=False,
                prefill="original", prefill_above=0.5) -> io.NodeOutput:
        cmap = ChangeMap.read(change_map, mode, invert, strength, softness, fractional, prefill, prefill_above,
                              display_name(cls))
        return io.NodeOutput(hooks.patch_model(model, cmap, Reference(scheduler=scheduler)))


NODES = [DifferentialKSampler, DifferentialKSamplerAdvanced, ApplyChangeMap]
