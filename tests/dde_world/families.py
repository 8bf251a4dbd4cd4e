"""Tiny random-weight models of every ComfyUI model family the pack is tested on.

Each family is built the way ComfyUI builds a checkpoint it has detected:
``comfy.supported_models.<Family>(unet_config).get_model(...)`` with the ``unet_config`` keys that
``comfy/model_detection.py`` produces for that family, shrunk (one or two blocks, hidden 64-128, one or
two heads) but with the family's real latent channels, patching, latent format, model type,
sampling settings and conditioning shapes. ComfyUI's layers skip weight initialisation, so the
weights are set here with a fixed seed (normal(0, 0.02); norm weights 1, biases 0).

``build(name)`` returns a :class:`Family`: the ``ModelPatcher``, hand-built positive/negative
CONDITIONING of the family's shapes (context widths, pooled output / ADM ``y``, Flux guidance,
attention masks), and a small latent of the family's layout. Requires ComfyUI on ``sys.path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: every family the matrix covers (the order the tests run them)
NAMES = ("sd15", "sd15_inpaint", "sdxl", "sd2_v", "sd3", "flux", "flux_fill", "auraflow", "lumina2", "hidream",
         "qwen_image", "wan21", "wan22", "ltxv", "hunyuan_video", "chroma", "cosmos_predict2")
#: families whose latent is 5-D (batch, channels, frames, height, width)
VIDEO = ("qwen_image", "wan21", "wan22", "ltxv", "hunyuan_video", "cosmos_predict2")


@dataclass
class Family:
    name: str
    model: object                 # comfy.model_patcher.ModelPatcher
    positive: list
    negative: list
    latent: torch.Tensor          # the picture to edit, in the family's layout (random, fixed seed)
    extra: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.latent.shape[1])


def _init(module: torch.nn.Module, seed: int) -> None:
    """normal(0, 0.02) weights, norm weights / scales 1, biases 0 (ComfyUI's ops leave them uninitialised); buffers a
    checkpoint would fill (SD3's ``pos_embed``, made with ``torch.empty``) normal(0, 0.02) too, so no leftover memory
    (a NaN or a huge value, whatever the allocator last held there) decides a test's outcome."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias":
                p.zero_()
            elif p.ndim == 1 and leaf in ("weight", "scale"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        for name, b in module.named_buffers():
            if b.is_floating_point() and name.rsplit(".", 1)[-1] == "pos_embed":
                b.copy_(torch.randn(b.shape, generator=gen) * 0.02)   # MMDiT's table: torch.empty, filled by a checkpoint
            elif b.is_floating_point() and not torch.isfinite(b).all():
                b.zero_()


def _unet(in_channels: int, context_dim: int, model_channels: int = 64, adm: int | None = None, linear: bool = False) -> dict:
    """The UNet keys model_detection reads off an SD-family state dict (one level, one res block)."""
    extra = {"num_classes": "sequential"} if adm else {}
    return dict(**extra, use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False,
                adm_in_channels=adm, in_channels=in_channels, out_channels=4, model_channels=model_channels,
                num_res_blocks=[1], transformer_depth=[1], transformer_depth_output=[1, 1], channel_mult=[1],
                transformer_depth_middle=1, use_linear_in_transformer=linear, context_dim=context_dim,
                use_temporal_resblock=False, use_temporal_attention=False)


def _configs():
    """name -> (supported_models class name, unet_config, state_dict handed to get_model)."""
    return {
        "sd15": ("SD15", _unet(4, 768), {}),
        "sd15_inpaint": ("SD15", _unet(9, 768), {}),
        "sdxl": ("SDXL", _unet(4, 2048, adm=2816, linear=True), {}),
        # SD20.model_type reads v-prediction off this norm's spread (std > 0.09), as for a real 768-v checkpoint
        "sd2_v": ("SD20", _unet(4, 1024, linear=True),
                  {"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1, 1, 64)}),
        "sd3": ("SD3", dict(in_channels=16, patch_size=2, out_channels=16, depth=1, input_size=None, adm_in_channels=2048,
                            context_embedder_config={"target": "torch.nn.Linear",
                                                     "params": {"in_features": 4096, "out_features": 64}},
                            num_patches=256, pos_embed_max_size=16, qk_norm="rms", pos_embed_scaling_factor=None,
                            x_block_self_attn_layers=[]), {}),
        "flux": ("Flux", dict(image_model="flux", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0, theta=10000,
                              out_channels=16, qkv_bias=True, txt_ids_dims=[], in_channels=16, hidden_size=64,
                              context_in_dim=4096, patch_size=2, vec_in_dim=768, depth=1, depth_single_blocks=1,
                              guidance_embed=True, yak_mlp=False, txt_norm=False), {}),
        "flux_fill": ("FluxInpaint", dict(image_model="flux", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0,
                                          theta=10000, out_channels=16, qkv_bias=True, txt_ids_dims=[], in_channels=96,
                                          hidden_size=64, context_in_dim=4096, patch_size=2, vec_in_dim=768, depth=1,
                                          depth_single_blocks=1, guidance_embed=True, yak_mlp=False, txt_norm=False), {}),
        "auraflow": ("AuraFlow", dict(max_seq=256, cond_seq_dim=2048, n_double_layers=1, n_layers=2, dim=64, n_heads=2,
                                      global_conddim=64), {}),
        "lumina2": ("Lumina2", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=64, cap_feat_dim=2304,
                                    n_layers=1, n_refiner_layers=1, qk_norm=True, n_heads=2, n_kv_heads=2,
                                    axes_dims=[8, 12, 12], axes_lens=[300, 512, 512], rope_theta=10000.0,
                                    ffn_dim_multiplier=4.0, multiple_of=32), {}),
        "hidream": ("HiDream", dict(image_model="hidream", attention_head_dim=64, axes_dims_rope=[32, 16, 16],
                                    caption_channels=[4096, 4096], max_resolution=[128, 128], in_channels=16,
                                    llama_layers=[0, 1], num_attention_heads=1, num_routed_experts=2,
                                    num_activated_experts=1, num_layers=1, num_single_layers=1, out_channels=16,
                                    patch_size=2, text_emb_dim=2048), {}),
        "qwen_image": ("QwenImage", dict(image_model="qwen_image", in_channels=64, num_layers=1, attention_head_dim=32,
                                         num_attention_heads=2, axes_dims_rope=[8, 12, 12]), {}),
        "wan21": ("WAN21_T2V", dict(image_model="wan2.1", dim=64, out_dim=16, num_heads=2, ffn_dim=128, num_layers=1,
                                    patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1), qk_norm=True,
                                    cross_attn_norm=True, eps=1e-6, in_dim=16, model_type="t2v"), {}),
        "wan22": ("WAN22_T2V", dict(image_model="wan2.1", dim=64, out_dim=48, num_heads=2, ffn_dim=128, num_layers=1,
                                    patch_size=(1, 2, 2), freq_dim=256, window_size=(-1, -1), qk_norm=True,
                                    cross_attn_norm=True, eps=1e-6, in_dim=48, model_type="t2v"), {}),
        "ltxv": ("LTXV", dict(image_model="ltxv", num_layers=1, attention_head_dim=32, num_attention_heads=2,
                              cross_attention_dim=64, caption_channels=4096), {}),
        "hunyuan_video": ("HunyuanVideo", dict(image_model="hunyuan_video", in_channels=16, patch_size=[1, 2, 2],
                                               out_channels=16, vec_in_dim=768, axes_dim=[16, 24, 24], context_in_dim=4096,
                                               hidden_size=64, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1,
                                               theta=256, qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
                                               use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False), {}),
        # further families that are cheap to build
        "chroma": ("Chroma", dict(image_model="chroma", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0, theta=10000,
                                  qkv_bias=True, txt_ids_dims=[], in_channels=64, out_channels=64, hidden_size=64,
                                  context_in_dim=4096, patch_size=2, vec_in_dim=None, depth=1, depth_single_blocks=1,
                                  in_dim=64, out_dim=64, hidden_dim=64, n_layers=1), {}),
        "cosmos_predict2": ("CosmosT2IPredict2", dict(
            image_model="cosmos_predict2", max_img_h=240, max_img_w=240, max_frames=128, in_channels=16, out_channels=16,
            patch_spatial=2, patch_temporal=1, model_channels=64, concat_padding_mask=True, crossattn_emb_channels=1024,
            pos_emb_cls="rope3d", pos_emb_learnable=True, pos_emb_interpolation="crop", min_fps=1, max_fps=30,
            use_adaln_lora=True, adaln_lora_dim=16, num_blocks=1, num_heads=2, extra_per_block_abs_pos_emb=False,
            rope_h_extrapolation_ratio=4.0, rope_w_extrapolation_ratio=4.0, rope_t_extrapolation_ratio=1.0,
            extra_h_extrapolation_ratio=1.0, extra_w_extrapolation_ratio=1.0, extra_t_extrapolation_ratio=1.0,
            rope_enable_fps_modulation=False), {}),
    }


def model_patcher(name: str, seed: int = 0):
    """The family's ModelPatcher, built through ``comfy.supported_models`` (float32, CPU)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    klass, unet_config, state_dict = _configs()[name]
    model_config = getattr(comfy.supported_models, klass)(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    base = model_config.get_model(state_dict, device="cpu")
    _init(base.diffusion_model, seed)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(base, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def _text(gen, tokens: int, width: int) -> torch.Tensor:
    return torch.randn(1, tokens, width, generator=gen)


def conditioning(name: str, seed: int) -> list:
    """A CONDITIONING of the family's shapes (what its text encoder would give), random with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    if name in ("sd15", "sd15_inpaint"):
        return [[_text(g, 77, 768), {}]]
    if name == "sdxl":
        return [[_text(g, 77, 2048), {"pooled_output": torch.randn(1, 1280, generator=g), "width": 64, "height": 64,
                                       "crop_w": 0, "crop_h": 0, "target_width": 64, "target_height": 64}]]
    if name == "sd2_v":
        return [[_text(g, 77, 1024), {}]]
    if name == "sd3":
        return [[_text(g, 154, 4096), {"pooled_output": torch.randn(1, 2048, generator=g)}]]
    if name in ("flux", "flux_fill"):
        return [[_text(g, 16, 4096), {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 3.5}]]
    if name == "auraflow":
        return [[_text(g, 16, 2048), {}]]
    if name == "lumina2":   # Gemma-2 hidden states and their (unpadded) mask: the model gets num_tokens from it
        return [[_text(g, 16, 2304), {"attention_mask": torch.ones(1, 16, dtype=torch.int64)}]]
    if name == "hidream":   # T5 + the llama layers (one per llama_layers entry), pooled CLIP-L + CLIP-G
        return [[_text(g, 16, 4096), {"pooled_output": torch.randn(1, 2048, generator=g),
                                      "conditioning_llama3": torch.randn(1, 2, 16, 4096, generator=g)}]]
    if name == "qwen_image":
        return [[_text(g, 16, 3584), {}]]
    if name == "chroma":   # T5 only: CLIPTextEncode gives pooled_output None
        return [[_text(g, 16, 4096), {"pooled_output": None}]]
    if name == "cosmos_predict2":
        return [[_text(g, 16, 1024), {}]]
    if name in ("wan21", "wan22"):
        return [[_text(g, 16, 4096), {}]]
    if name == "ltxv":
        return [[_text(g, 16, 4096), {"attention_mask": torch.ones(1, 16, dtype=torch.int64), "frame_rate": 25}]]
    if name == "hunyuan_video":   # its text encoder drops an all-ones attention mask (ComfyUI's HunyuanVideo
        # cannot batch a padded mask with cfg: attn_mask is built for batch 1), so none here
        return [[_text(g, 16, 4096), {"pooled_output": torch.randn(1, 768, generator=g), "guidance": 6.0}]]
    raise KeyError(name)


def latent_shape(name: str, frames: int = 1, size: int = 8) -> tuple:
    """A small latent of the family's layout (``frames`` latent frames for the video families)."""
    channels = {"sd15": 4, "sd15_inpaint": 4, "sdxl": 4, "sd2_v": 4, "sd3": 16, "flux": 16, "flux_fill": 16,
                "auraflow": 4, "lumina2": 16, "hidream": 16, "qwen_image": 16, "wan21": 16, "wan22": 48, "ltxv": 128,
                "hunyuan_video": 16, "chroma": 16, "cosmos_predict2": 16}[name]
    if name in VIDEO:
        if name == "ltxv":   # LTXV's VAE: 32x spatial compression; a small latent is still 4 x 4 cells
            return (1, channels, frames, size // 2, size // 2)
        return (1, channels, frames, size, size)
    return (1, channels, size, size)


_CACHE: dict[str, Family] = {}


def build(name: str, frames: int = 1) -> Family:
    """The family with its conditioning and a random latent (cached per process; one model per family)."""
    key = f"{name}/{frames}"
    if key not in _CACHE:
        same = [v for k, v in _CACHE.items() if k.startswith(name + "/")]
        model = same[0].model if same else model_patcher(name)
        latent = torch.randn(latent_shape(name, frames), generator=torch.Generator().manual_seed(7)) * 0.5
        _CACHE[key] = Family(name, model, conditioning(name, 1), conditioning(name, 2), latent)
    return _CACHE[key]


def vae(name: str, seed: int = 3):
    """A tiny random VAE ComfyUI detects for the family's latent (TAESD / TAEHV layouts), or None.

    4- and 16-channel image latents: TAESD (as taesd / taesd3 / taef1); 16- and 48-channel video latents:
    TAEHV (as lighttaew2_1 / taew2_2). LTXV's 128-channel latent has no small VAE ComfyUI can build: None.
    """
    import comfy.sd
    import comfy.taesd.taehv as taehv
    import comfy.taesd.taesd as taesd

    from .tiny import _reinit

    channels = latent_shape(name)[1]
    if name == "ltxv":
        return None
    if name in VIDEO:
        model = _reinit(taehv.TAEHV(latent_channels=channels), seed)
        sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    else:
        model = _reinit(torch.nn.ModuleDict({"taesd_encoder": taesd.Encoder(latent_channels=channels),
                                             "taesd_decoder": taesd.Decoder(latent_channels=channels)}), seed)
        sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        sd["vae_scale"] = torch.tensor(1.0)
        sd["vae_shift"] = torch.tensor(0.0)
    return comfy.sd.VAE(sd=sd)
