"""A tiny random-weight SD1.5-shaped checkpoint the real ComfyUI loaders accept.

Written at test time (never committed): an SD1.5-detectable UNet with one level and one res
block (model_channels 320, context_dim 768; about 21M parameters) built with ComfyUI's own
``UNetModel``, a full-size random CLIP-L text encoder (so ``CLIPTextEncode`` works) and a
TAESD-layout VAE. ComfyUI's layers skip weight initialisation, so torch's default init is run
again on every module before saving.

Files (under ``models_dir``):
  checkpoints/dde_tiny_sd15.safetensors   UNet + CLIP-L + TAESD VAE (CheckpointLoaderSimple)
  unet/dde_tiny_unet.safetensors          UNet alone (UNETLoader)
  vae/dde_tiny_taesd.safetensors          TAESD VAE alone (VAELoader)
"""

from __future__ import annotations

import os

import torch

CHECKPOINT = "dde_tiny_sd15.safetensors"
UNET = "dde_tiny_unet.safetensors"
VAE = "dde_tiny_taesd.safetensors"

UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1], channel_mult=[1],
    num_heads=8, num_head_channels=-1, transformer_depth=[1], transformer_depth_middle=1,
    transformer_depth_output=[1, 1], context_dim=768, use_spatial_transformer=True, use_linear_in_transformer=False,
    legacy=False, adm_in_channels=None, use_temporal_attention=False, use_temporal_resblock=False,
)


#: the real SD1.5 UNet layout (860M parameters), for benchmarks only
SD15_FULL_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    channel_mult=[1, 2, 4, 4], num_heads=8, num_head_channels=-1, transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
    transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], context_dim=768,
    use_spatial_transformer=True, use_linear_in_transformer=False, legacy=False, adm_in_channels=None,
    use_temporal_attention=False, use_temporal_resblock=False,
)


def _torch_reset(m: torch.nn.Module):
    """torch's own ``reset_parameters`` for a layer (ComfyUI's op classes override it with a no-op)."""
    for klass in type(m).__mro__:
        if klass.__module__.startswith("torch.nn") and "reset_parameters" in vars(klass):
            klass.reset_parameters(m)
            return


def _reinit(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            _torch_reset(m)
        for p in module.parameters():  # anything no layer initialised (custom parameters)
            if not torch.isfinite(p).all():
                p.zero_()
    return module


def unet_model(full: bool = False, seed: int = 0, dtype=torch.float32):
    """An in-memory SD1.5 ModelPatcher (tiny by default, the full 860M layout with ``full``)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = {k: v for k, v in (SD15_FULL_CONFIG if full else UNET_CONFIG).items() if k not in ("num_heads", "num_head_channels")}
    model_config = comfy.supported_models.SD15(config)
    model_config.set_inference_dtype(dtype, None)
    base = model_config.get_model({}, device="cpu")
    _reinit(base.diffusion_model, seed)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(base, load_device=device, offload_device=comfy.model_management.unet_offload_device())


def tiny_unet_state_dict(seed: int = 0) -> dict:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**UNET_CONFIG, dtype=torch.float32, device="cpu", operations=comfy.ops.disable_weight_init)
    _reinit(unet, seed)
    return {k: v.detach().clone().contiguous() for k, v in unet.state_dict().items()}


def taesd_state_dict(seed: int = 1) -> dict:
    import comfy.taesd.taesd as taesd

    model = _reinit(torch.nn.ModuleDict({"taesd_encoder": taesd.Encoder(), "taesd_decoder": taesd.Decoder()}), seed)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    sd["vae_scale"] = torch.tensor(1.0)
    sd["vae_shift"] = torch.tensor(0.0)
    return sd


def clip_l_state_dict(seed: int = 2) -> dict:
    import comfy.ops
    from comfy.clip_model import CLIPTextModel
    import json
    import comfy.sd1_clip

    path = os.path.join(os.path.dirname(comfy.sd1_clip.__file__), "sd1_clip_config.json")
    with open(path) as f:
        config = json.load(f)
    model = CLIPTextModel(config, torch.float32, "cpu", comfy.ops.disable_weight_init)
    _reinit(model, seed)
    with torch.no_grad():  # CLIP's own init scale: activations stay finite in fp16 through 12 layers
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    sd["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return sd


def write_tiny_models(models_dir: str) -> dict:
    """Write the three files (skipping any that exist); returns their names by kind."""
    from safetensors.torch import save_file

    paths = {
        "checkpoints": os.path.join(models_dir, "checkpoints", CHECKPOINT),
        "unet": os.path.join(models_dir, "unet", UNET),
        "vae": os.path.join(models_dir, "vae", VAE),
    }
    for p in paths.values():
        os.makedirs(os.path.dirname(p), exist_ok=True)
    if not all(os.path.exists(p) for p in paths.values()):
        unet = tiny_unet_state_dict()
        vae = taesd_state_dict()
        clip = clip_l_state_dict()
        save_file(unet, paths["unet"])
        save_file(vae, paths["vae"])
        ckpt = {"model.diffusion_model." + k: v for k, v in unet.items()}
        ckpt.update({"first_stage_model." + k: v for k, v in vae.items()})
        ckpt.update({"cond_stage_model.transformer." + k: v for k, v in clip.items()})
        save_file(ckpt, paths["checkpoints"])
    return {"checkpoint": CHECKPOINT, "unet": UNET, "vae": VAE, "paths": paths}
