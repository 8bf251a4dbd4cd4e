"""The peers' own code on the pack's tiny checkpoint, for the oracle tier (tests/test_oracle_*.py).

One model for both sides: the tiny SD1.5-shaped checkpoint (``tiny.py``) loaded by ComfyUI's own loader,
its UNet renamed with ComfyUI's own ``comfy.utils.unet_to_diffusers`` map and loaded strictly into diffusers'
``UNet2DConditionModel``, its CLIP-L loaded strictly into transformers' ``CLIPTextModel`` (tokenizer: the
files ComfyUI ships). diffusers and transformers are test-only dependencies (installed by ``.ci/run``,
never in requirements.txt); this module imports them, so only the oracle tier imports it.

* :func:`diffedit_pipeline`: diffusers' ``StableDiffusionDiffEditPipeline`` (``pipelines/deprecated``) built
  from those parts and SD1.5's scheduler settings. The VAE is a small random ``AutoencoderKL`` that only
  supplies the pipeline's configuration (scale factor 8, 4 latent channels): every call gets latents.
* ``exx8.pipeline``: the Differential Diffusion authors' own pipeline (their file executed from a git snapshot at
  test time, see ``exx8.py``) with diffusers' Euler scheduler set to ComfyUI's sigmas (:class:`ComfyEuler`).
* ``probes.returned_locals`` (re-exported here): the local variables of a peer's function as it returns (its
  intermediate results, e.g. ``generate_mask``'s raw map), read without changing its code.
"""

from __future__ import annotations

import json
import os

import torch

from .probes import returned_locals  # noqa: F401  (the oracle tests read peers' intermediate results with it)

#: diffusers' scheduler configuration of Stable Diffusion 1.x (its ``scheduler_config.json``)
SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")


def diffusers_unet(model):
    """diffusers' ``UNet2DConditionModel`` holding the ComfyUI MODEL's UNet weights (strict load, eval mode)."""
    import comfy.utils
    from diffusers import UNet2DConditionModel

    cfg = model.model.model_config.unet_config
    levels = len(cfg["channel_mult"])
    assert len(set(cfg["num_res_blocks"])) == 1 and cfg.get("adm_in_channels") is None and not cfg["use_linear_in_transformer"]
    cross = ["CrossAttn" if d else "" for d in cfg["transformer_depth"][::cfg["num_res_blocks"][0]]]
    unet = UNet2DConditionModel(
        sample_size=cfg["image_size"], in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
        block_out_channels=tuple(cfg["model_channels"] * m for m in cfg["channel_mult"]),
        down_block_types=tuple(f"{c}DownBlock2D" for c in cross),
        up_block_types=tuple(f"{c}UpBlock2D" for c in reversed(cross)),
        layers_per_block=cfg["num_res_blocks"][0], cross_attention_dim=cfg["context_dim"],
        attention_head_dim=cfg["num_heads"], norm_num_groups=32, use_linear_projection=False)
    assert levels == len(unet.down_blocks)
    ours = model.model.diffusion_model.state_dict()
    renamed = {theirs: ours[key] for theirs, key in comfy.utils.unet_to_diffusers(cfg).items() if key in ours}
    used = set(comfy.utils.unet_to_diffusers(cfg).values()) & set(ours)
    assert used == set(ours), f"weights without a diffusers name: {sorted(set(ours) - used)[:5]}"
    unet.load_state_dict(renamed, strict=True)
    return unet.eval()


def transformers_clip(clip):
    """transformers' ``CLIPTextModel`` holding the ComfyUI CLIP's CLIP-L weights (strict load, float32, eval mode)."""
    import comfy.sd1_clip
    import transformers

    path = os.path.join(os.path.dirname(comfy.sd1_clip.__file__), "sd1_clip_config.json")
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_json_file(path))
    want = set(model.state_dict())
    ours = clip.cond_stage_model.clip_l.transformer.state_dict()
    renamed = {}
    for key, value in ours.items():
        name = key if key in want else key.removeprefix("text_model.")   # transformers 5 drops the prefix
        if name in want:
            renamed[name] = value.to(torch.float32)
        else:
            assert key in ("text_projection.weight", "text_model.embeddings.position_ids"), key   # not in CLIPTextModel
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def tokenizer():
    """transformers' ``CLIPTokenizer`` from the SD1 tokenizer files ComfyUI ships (no download)."""
    import comfy.sd1_clip
    import transformers

    return transformers.CLIPTokenizer.from_pretrained(os.path.join(os.path.dirname(comfy.sd1_clip.__file__), "sd1_tokenizer"))


def diffedit_pipeline(unet, text_encoder, tok, set_alpha_to_one: bool = False):
    """diffusers' DiffEdit pipeline on these parts (DDIM and DDIM inverse schedulers with SD1.5's settings).

    ``set_alpha_to_one``: the DDIM end points are the clean latent (noise level 0, as ComfyUI's schedules end)
    instead of diffusers' SD1.5 default (the level of timestep 0).
    """
    from diffusers import AutoencoderKL, DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    settings = {**SD15_SCHEDULER, "set_alpha_to_one": set_alpha_to_one}
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=8, layers_per_block=1)
    pipe = StableDiffusionDiffEditPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                           scheduler=DDIMScheduler(**settings), safety_checker=None, feature_extractor=None,
                                           inverse_scheduler=DDIMInverseScheduler(**settings),
                                           requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def comfy_euler(sigmas: torch.Tensor, timesteps: torch.Tensor):
    """diffusers' ``EulerDiscreteScheduler`` (SD1.5 settings) whose ``set_timesteps`` puts ComfyUI's levels in place.

    ``sigmas``: ComfyUI's schedule ``s_0..s_N`` (float32, ending at 0); ``timesteps``: what ComfyUI's model is
    called with at ``s_0..s_{N-1}`` (``model_sampling.timestep``, rounded to the table). The scheduler's own
    Euler arithmetic (``scale_model_input``, ``step``, ``add_noise``) then runs on exactly ComfyUI's levels.
    """
    from diffusers import EulerDiscreteScheduler

    class ComfyEuler(EulerDiscreteScheduler):
        def set_timesteps(self, num_inference_steps=None, device=None, **kwargs):
            super().set_timesteps(num_inference_steps, device=device)
            assert num_inference_steps == len(timesteps) == len(sigmas) - 1
            self.sigmas = sigmas.detach().to("cpu", torch.float32).clone()
            self.timesteps = timesteps.detach().to(device or "cpu", torch.float32).clone()

    settings = {k: v for k, v in SD15_SCHEDULER.items() if k not in ("clip_sample", "set_alpha_to_one")}
    return ComfyEuler(**settings)


def encode(clip, text: str) -> list:
    """CLIPTextEncode's CONDITIONING for ``text``."""
    import nodes

    return nodes.CLIPTextEncode().encode(clip, text)[0]


def describe(**figures) -> str:
    """One line of figures for the test log (``pytest -s`` or a failure shows it)."""
    return json.dumps({k: (float(v) if isinstance(v, (int, float, torch.Tensor)) else v) for k, v in figures.items()})
