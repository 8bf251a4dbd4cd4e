"""Seeing what a change map will do: the Strength Fan and the schedule preview."""

from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.model_management


from . import differential_sampling, messages, overlays
from .comfy_glue import DOWNSCALE_KEYS
from .core import maps as maps_core
from .core import visual
from .core.errors import InputError, describe
from .core.schedule import MODES, free_steps
from .core.validate import check_choice, check_conditioning
from .latent_space import fitted_latent, model_latent, pixels_per_cell
from .naming import VISUALISE, display_name, names_errors, search_aliases
from .plan import ChangeMap, PlanKey
from .inputs import cfg_input, mode_input, prompt_inputs, sampler_scheduler_inputs, seed_input, steps_input



def _sampling_inputs() -> list:
    return [steps_input("Sampling steps, as in the sampler you will use."), *sampler_scheduler_inputs()]


def _one_latent(model, latent) -> torch.Tensor:
    samples = model_latent(model, latent)
    if samples.shape[0] != 1:
        raise InputError("latent_image", "a LATENT of one image (batch 1)", describe(samples))
    return samples


class StrengthFan(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_StrengthFan",
            display_name="Strength Fan",
            category=VISUALISE,
            **search_aliases("denoise sweep", "strength comparison", "denoise grid"),
            description="The paper's Strength Fan: one picture edited at k uniform strengths in one batched run (every "
                        "panel shares the same noise), decoded and laid out as a labelled grid or as one fan-shaped "
                        "picture sweeping from the first strength to the last.",
            inputs=[
                io.Model.Input("model", tooltip="The model used for denoising."),
                seed_input(tooltip="Noise seed, shared by every panel."),
                *_sampling_inputs(),
                cfg_input(),
                *prompt_inputs(),
                io.Latent.Input("latent_image", tooltip="The latent of the one picture (or one video) to edit."),
                io.Vae.Input("vae", tooltip="Decodes the panels."),
                io.String.Input("strengths", default="0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1",
                                tooltip="The strengths to show, 0..1, separated by commas (up to 64)."),
                mode_input(tooltip="How a strength becomes a start step (see Differential KSampler)."),
                io.Combo.Input("layout", options=["grid", "fan"], default="grid",
                               tooltip="grid: labelled panels. fan: one picture, each angular sector from one strength."),
                io.Int.Input("columns", default=0, min=0, max=64, tooltip="grid columns (0: about square)."),
            ],
            outputs=[
                io.Image.Output(display_name="fan", tooltip="The labelled grid or fan picture."),
                io.Image.Output(display_name="panels", tooltip="One decoded picture per strength."),
                io.Latent.Output(display_name="latents", tooltip="One latent per strength."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, model, seed, steps, sampler_name, scheduler, cfg, positive, negative, latent_image, vae, strengths,
                mode, layout, columns) -> io.NodeOutput:
        node = display_name(cls)
        values = visual.parse_strengths(strengths)
        samples = _one_latent(model, latent_image)
        check_conditioning(positive, "positive")
        check_conditioning(negative, "negative")
        k = len(values)
        batch = {**{key: latent_image[key] for key in DOWNSCALE_KEYS if key in latent_image},
                 "samples": samples.repeat(k, *([1] * (samples.ndim - 1))), "batch_index": [0] * k}   # one noise for all
        maps = torch.tensor(values, dtype=torch.float32).view(k, 1, 1)
        if samples.ndim == 5:   # video: the panel's strength on every latent frame
            maps = maps.repeat_interleave(samples.shape[2], dim=0)
        cmap = ChangeMap(maps=maps, mode=mode, node=node, input_name="strengths")
        key = PlanKey.for_ksampler(model, fitted_latent(model, batch, "latent_image").shape, steps, sampler_name, scheduler)
        out = differential_sampling.differential_sample(model, seed, cfg, positive, negative, batch, cmap, key)
        out.pop("batch_index", None)
        decoded = vae.decode(out["samples"])[..., :3].float().cpu()
        # a video VAE gives (k, frames, H, W, 3): the panels output holds every frame (strength-major), the
        # grid / fan picture shows each strength's first frame
        panels = decoded.reshape(-1, *decoded.shape[-3:])
        firsts = decoded[:, 0] if decoded.ndim == 5 else decoded
        labels = [f"{v:g}" for v in values]
        picture = visual.fan(firsts, labels) if layout == "fan" else visual.grid(firsts, labels, columns)
        return io.NodeOutput(picture, panels, out, ui=overlays.images_ui(picture, label=node, kind="grid"))


class SchedulePreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_SchedulePreview",
            display_name="Change Map Schedule Preview",
            category=VISUALISE,
            **search_aliases("change map preview", "denoise schedule preview"),
            is_output_node=True,   # a preview: it runs and shows its picture on itself without a node after it
            description="What a change map will do with this model, sampler, scheduler, steps and mode, before sampling: "
                        "the step at which every latent cell starts to change and its effective strength (free steps / "
                        "steps), one square per latent cell at the picture's size, so the latent grid shows.",
            inputs=[
                io.Model.Input("model", tooltip="The model you will sample with (its noise schedule matters)."),
                io.Mask.Input("change_map", tooltip="The change map (white = change)."),
                *_sampling_inputs(),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="KSampler's denoise."),
                mode_input(tooltip="The sampler's threshold mode."),
                io.Boolean.Input("invert", default=False, tooltip="On: the map is white = keep."),
                io.Latent.Input("latent_image", optional=True,
                                tooltip="The latent you will sample (sets the grid). Not connected: the map's size / "
                                "the model's picture pixels per latent cell (8 for SD and Flux, 16 for Flux.2)."),
            ],
            outputs=[
                io.Image.Output(display_name="preview", tooltip="Start steps (yellow = first, purple = last, black = "
                                "never) and effective strength, one square per latent cell (a panel at most 2048 px a "
                                "side; at most 33,554,432 pixels in all, a larger batch shows its first maps)."),
                io.Mask.Output(display_name="effective_strength", tooltip="Free steps / steps per latent cell (latent size)."),
                io.Mask.Output(display_name="start_step", tooltip="Start step / steps per latent cell (1 = never changes)."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, model, change_map, steps, sampler_name, scheduler, denoise, mode, invert,
                latent_image=None) -> io.NodeOutput:
        node = display_name(cls)
        maps = maps_core.read_change_map(change_map, invert)
        scale = pixels_per_cell(model)
        if latent_image is not None:
            shape = tuple(fitted_latent(model, latent_image, "latent_image").shape)   # the grid the sampler will see
        else:
            shape = (maps.shape[0], 4, max(1, maps.shape[1] // scale), max(1, maps.shape[2] // scale))
        cmap = ChangeMap(maps=maps, mode=check_choice(mode, MODES, "mode"), node=node)
        run = cmap.plan(model, PlanKey.for_ksampler(model, shape, steps, sampler_name, scheduler, denoise)).run
        start = run.start[:, 0]
        if start.ndim == 4:   # video latent (B,T,h,w): one picture and map per latent frame, (B*T,h,w)
            start = start.reshape(-1, *start.shape[-2:])
        n = run.n_steps
        effective = free_steps(start, n) / max(n, 1)
        start_frac = torch.where(torch.isfinite(start), start / max(n, 1), torch.ones_like(start))
        shown = visual.schedule_images_fitting(start.shape[0], start.shape[-2], start.shape[-1], scale)
        pictures = []
        stop = comfy.model_management.throw_exception_if_processing_interrupted
        for i in range(shown):   # a second each at the size cap: Cancel is checked while drawing
            pictures.append(visual.schedule_image(start[i], effective[i], n, scale, check=stop))
        picture = torch.cat(pictures)
        levels = messages.levels_of(run)
        warnings = (messages.stretch(node, "change_map", maps, shape) + messages.collapse(node, levels)
                    + messages.preview_cut(node, shown, int(start.shape[0])))
        ui = overlays.images_ui(picture, label=messages.levels_line(levels), kind="schedule")
        return io.NodeOutput(picture, effective.contiguous(), start_frac.contiguous(),
                             ui=overlays.messages_ui(warnings, ui))


NODES = [StrengthFan, SchedulePreview]
