"""Input declarations shared by several nodes (one definition per input idea)."""

from __future__ import annotations

from comfy_api.latest import io

import comfy.samplers

from .core import diffedit_math
from .core.prefill import PREFILL
from .core.schedule import MODES

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def change_map_inputs(default_mode: str = "step") -> list:
    """The inputs every change-map sampler shares: the map and how its values become steps."""
    return [
        io.Mask.Input("change_map", tooltip="Per-pixel change strength, white = change (1), black = keep exactly (0). "
                      "Any size: area-averaged to the latent grid. One map for the batch or one per image."),
        mode_input(default_mode),
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


def mode_input(default: str = "step", tooltip: str | None = None) -> io.Combo.Input:
    return io.Combo.Input("mode", options=list(MODES), default=default, tooltip=tooltip or (
        "How a map value becomes a start step. step: the paper's rule, a value g is sampled for the last floor(g x steps) "
        "steps (the authors' code runs one step more and moves map-0 pixels in its last step; here 0 stays exact). denoise: g "
        "starts at the noise level where KSampler with denoise = g starts (same meaning on every model family). "
        "timestep: the built-in DifferentialDiffusion's threshold on model timesteps (for old workflows; grey does "
        "little on shifted flow models)."))


def seed_input(name: str = "seed", tooltip: str = "The random seed used for creating the noise (same as KSampler's).") -> io.Int.Input:
    return io.Int.Input(name, default=0, min=0, max=MAX_SEED, control_after_generate=True, tooltip=tooltip)


def steps_input(tooltip: str = "The number of sampling steps.", default: int = 20) -> io.Int.Input:
    return io.Int.Input("steps", default=default, min=1, max=10000, tooltip=tooltip)


def cfg_input(default: float = 8.0, tooltip: str = "Classifier-free guidance scale.") -> io.Float.Input:
    return io.Float.Input("cfg", default=default, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=tooltip)


def sampler_scheduler_inputs() -> list:
    return [io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="The sampling algorithm."),
            io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="The noise schedule.")]


def prompt_inputs() -> list:
    return [io.Conditioning.Input("positive", tooltip="What the changed region should show."),
            io.Conditioning.Input("negative", tooltip="What it should not show.")]


def few_step_and_prefill_inputs() -> list:
    """Appended after every differential sampler's other inputs; optional with defaults that change nothing, so
    API-format prompts written before they existed still validate."""
    return [
        io.Boolean.Input("fractional", default=False, optional=True,
                         tooltip="Continuous strength on few-step models. Off: a map value between two step "
                         "boundaries rounds down (4 steps = 4 shades). On: the step before its start step blends the "
                         "freed and the kept latent by how far the value lies between the two boundaries."),
        io.Combo.Input("prefill", options=list(PREFILL), default="original", optional=True,
                       tooltip="What pixels above prefill_above start from (room for new content). original: the "
                       "picture. fill: colour from the surroundings. latent noise: random noise. latent nothing: "
                       "zeros. Pixels at or below the level (and every map-0 pixel) keep the original exactly."),
        io.Float.Input("prefill_above", default=0.5, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="Map level above which prefill applies (on the latent grid)."),
    ]


def estimation_inputs(per_draw: str = "a draw needs 2, or 3 with cfg") -> list:
    """DiffEdit's estimation settings (DiffEdit Mask and DiffEdit Masks): noise level, draws, seed, guidance,
    threshold, smoothing, grow and batch size (``per_draw``: how many evaluations a draw needs, for its tooltip)."""
    return [
        io.Float.Input("strength", default=0.5, min=0.01, max=1.0, step=0.01,
                       tooltip="Noise level of the draws as a fraction of the model's noise range (0.5 = the "
                       "half-way timestep, the paper's setting)."),
        io.Int.Input("n", default=10, min=1, max=100000,
                     tooltip="Number of noise draws averaged (paper: 10); evaluated in chunks, so any n fits in memory."),
        seed_input(tooltip="Seed of the noise draws: the same seed gives the same mask."),
        io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1,
                       tooltip="Guidance applied to both predictions; 1 = plain conditional predictions (fastest)."),
        io.Combo.Input("threshold_method", options=list(diffedit_math.METHODS), default="rescale",
                       tooltip="rescale (paper): clip the top and bottom 8% of the difference, rescale to 0..1, cut "
                       "at threshold. minmax: plain min-max then cut (no clipping of the extremes: one bright outlier shrinks the mask). clamp (diffusers' "
                       "generate_mask): cap at clamp_ratio x mean, divide by that cap, keep what is above threshold. "
                       "otsu: automatic cut. percentile: keep the top part."),
        io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                       tooltip="Cut for rescale, minmax and clamp (paper and diffusers: 0.5); clamp keeps heat strictly above it."),
        io.Float.Input("clamp_ratio", default=3.0, min=0.1, max=100.0, step=0.1,
                       tooltip="clamp method: differences are capped at this x their mean and divided by that cap (diffusers' "
                       "mask_thresholding_ratio: 3)."),
        io.Float.Input("percentile", default=0.8, min=0.0, max=1.0, step=0.01,
                       tooltip="percentile method: the fraction of the picture left outside the mask."),
        io.Float.Input("smooth", default=0.0, min=0.0, max=256.0, step=0.5,
                       tooltip="Gaussian smoothing radius in picture pixels before thresholding (0 = none)."),
        io.Int.Input("grow", default=0, min=-256, max=256,
                     tooltip="Grow (positive) or shrink (negative) the binary mask by this many pixels."),
        io.Int.Input("batch_size", default=0, min=0, max=4096,
                     tooltip=f"Model evaluations per call ({per_draw}). 0 = auto: on GPUs as many as "
                     "memory allows, on CPU one (batching is slower there)."),
    ]
