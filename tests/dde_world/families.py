"""Tiny random-weight models of every ComfyUI model family the pack is tested on.

Each family is built the way ComfyUI builds a checkpoint it has detected:
``comfy.supported_models.<Family>(unet_config).get_model(...)`` with the ``unet_config`` keys that
``comfy/model_detection.py`` produces for that family, shrunk (one or two blocks, hidden 64-128, one or
two heads; where a layout needs more, the comment at the family says why) but with the family's real latent
channels, patching, latent format, model type, sampling settings and conditioning shapes. ComfyUI's layers
skip weight initialisation, so the weights are set here with a fixed seed (normal(0, 0.02); norm weights 1,
biases 0). Sizes a class fixes in ``unet_extra_config`` are shrunk after it is applied (``Spec.fixed``).

``build(name)`` returns a :class:`Family`: the ``ModelPatcher``, hand-built positive/negative
CONDITIONING of the family's shapes (what its text encoder and ComfyUI's own conditioning nodes give it:
context widths, pooled output / ADM ``y``, guidance, attention masks, reference latents, concat images),
and a small latent of the family's layout (channels and dimensions from its latent format).
A family the running ComfyUI does not have is :func:`unavailable` (the tests skip it, naming the version).
Requires ComfyUI on ``sys.path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(frozen=True)
class Spec:
    klass: str                              # the comfy.supported_models class
    config: dict | Callable[[], dict]       # unet_config (a function: read when built, may look at ComfyUI)
    cond: Callable[[torch.Generator], list]  # the CONDITIONING its text encoder / conditioning nodes give
    size: int = 8                           # latent cells per side of the test latent
    since: str = "0.8.0"                    # the oldest tested ComfyUI that has it
    state_dict: dict = field(default_factory=dict)
    extra: Callable | None = None           # (latent, generator) -> extra conditioning keys (concat / reference latents)
    fixed: dict = field(default_factory=dict)  # sizes the class's unet_extra_config fixes, shrunk after it is applied
    prepare: Callable | None = None         # (name, positive, negative, latent, generator) -> (positive, negative):
    #                                         the family's own ComfyUI conditioning node run on them
    frames: int = 1                         # the fewest latent frames its test latent has (video families)
    buffers: tuple = ()                     # checkpoint buffers the model leaves unset (torch.empty / unseeded
    #                                         randn), filled from a seeded generator


def _c(g: torch.Generator, n_tokens: int, n_features: int, **extra) -> list:
    return [[torch.randn(1, n_tokens, n_features, generator=g), extra]]


def _pooled(g: torch.Generator, width: int) -> torch.Tensor:
    return torch.randn(1, width, generator=g)


def _mask(tokens: int) -> torch.Tensor:
    return torch.ones(1, tokens, dtype=torch.int64)


def _unet(in_channels: int, context_dim: int, model_channels: int = 64, adm: int | None = None, linear: bool = False) -> dict:
    """The UNet keys model_detection reads off an SD-family state dict (one level, one res block)."""
    extra = {"num_classes": "sequential"} if adm else {}
    return dict(**extra, use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False,
                adm_in_channels=adm, in_channels=in_channels, out_channels=4, model_channels=model_channels,
                num_res_blocks=[1], transformer_depth=[1], transformer_depth_output=[1, 1], channel_mult=[1],
                transformer_depth_middle=1, use_linear_in_transformer=linear, context_dim=context_dim,
                use_temporal_resblock=False, use_temporal_attention=False)


def _flux(**over) -> dict:
    """Flux-family keys (model_detection's Flux branch) at hidden 64, two heads of 32, one block of each kind."""
    cfg = dict(image_model="flux", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0, theta=10000, out_channels=16,
               qkv_bias=True, txt_ids_dims=[], in_channels=16, hidden_size=64, context_in_dim=4096, patch_size=2,
               vec_in_dim=768, depth=1, depth_single_blocks=1, guidance_embed=True, yak_mlp=False, txt_norm=False)
    cfg.update(over)
    return cfg


def _flux2(context: int, guidance: bool) -> dict:
    """Flux.2 (dev: Mistral-3 24B text, guidance; Klein: Qwen-3 text, no guidance): 128-channel latent, patch 1."""
    return _flux(image_model="flux2", axes_dim=[8, 8, 8, 8], mlp_ratio=3.0, theta=2000, out_channels=128,
                 global_modulation=True, mlp_silu_act=True, qkv_bias=False, ops_bias=False, default_ref_method="index",
                 ref_index_scale=10.0, txt_ids_dims=[3], patch_size=1, in_channels=128, context_in_dim=context,
                 vec_in_dim=None, guidance_embed=guidance)


def _hunyuan(**over) -> dict:
    """HunyuanVideo-family keys (model_detection's Hunyuan Video branch), hidden 64, one head of 64."""
    cfg = dict(image_model="hunyuan_video", in_channels=16, patch_size=[1, 2, 2], out_channels=16, vec_in_dim=768,
               axes_dim=[16, 24, 24], context_in_dim=4096, hidden_size=64, mlp_ratio=4.0, num_heads=1, depth=1,
               depth_single_blocks=1, theta=256, qkv_bias=True, guidance_embed=True, byt5=False, meanflow=False,
               use_cond_type_embedding=False, vision_in_dim=None, meanflow_sum=False)
    cfg.update(over)
    return cfg


def _chroma_radiance() -> dict:
    import dataclasses

    import comfy.ldm.chroma_radiance.model as crm

    cfg = dict(image_model="chroma_radiance", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0, theta=10000,
               qkv_bias=True, txt_ids_dims=[], in_channels=3, out_channels=3, hidden_size=64, context_in_dim=4096,
               patch_size=16, vec_in_dim=None, depth=1, depth_single_blocks=1, in_dim=64, out_dim=64, hidden_dim=64,
               n_layers=1, nerf_hidden_size=16, nerf_mlp_ratio=4, nerf_depth=1, nerf_max_freqs=8, nerf_tile_size=0,
               nerf_final_head_type="conv", nerf_embedder_dtype=torch.float32, use_x0=False)
    fields = {f.name for f in dataclasses.fields(crm.ChromaRadianceParams)}
    if "use_sequential_txt_ids" in fields:   # newer ComfyUI: model_detection adds it
        cfg["use_sequential_txt_ids"] = False
    return cfg


def _wan(**over) -> dict:
    """Wan 2.1-family keys (model_detection's Wan branch), dim 64, two heads."""
    cfg = dict(image_model="wan2.1", dim=64, out_dim=16, num_heads=2, ffn_dim=128, num_layers=1, patch_size=(1, 2, 2),
               freq_dim=256, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=1e-6, in_dim=16,
               model_type="t2v")
    cfg.update(over)
    return cfg


def _cogvideox(in_channels: int) -> dict:
    """CogVideoX 1.0 keys (model_detection's CogVideoX branch, rotary positions), two heads of 32."""
    return dict(image_model="cogvideox", num_attention_heads=2, attention_head_dim=32, time_embed_dim=64, num_layers=1,
                in_channels=in_channels, patch_size=2, text_embed_dim=4096, use_learned_positional_embeddings=False,
                use_rotary_positional_embeddings=True)


def _concat(channels: int):
    """What an image-to-video / inpaint conditioning node adds: ``concat_latent_image`` (``channels`` wide)."""
    def extra(latent: torch.Tensor, g: torch.Generator) -> dict:
        shape = (latent.shape[0], channels, *latent.shape[2:])
        return {"concat_latent_image": torch.randn(shape, generator=g) * 0.5}

    return extra


def _reference(latent: torch.Tensor, g: torch.Generator) -> dict:
    """What ComfyUI's ReferenceLatent node adds: the latent of a reference picture (here of the same size)."""
    return {"reference_latents": [torch.randn(latent.shape, generator=g) * 0.5]}


def _node(node_id: str, **inputs) -> tuple:
    """Run one of ComfyUI's own nodes (V1 or V3) by input name; its outputs as a tuple."""
    import nodes

    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    if hasattr(cls, "GET_SCHEMA"):
        out = cls.execute(**inputs)
        return tuple(out.result) if hasattr(out, "result") else tuple(out)
    return tuple(getattr(cls(), cls.FUNCTION)(**inputs))


def _pictures(g: torch.Generator, frames: int, height: int, width: int) -> torch.Tensor:
    return torch.rand(frames, height, width, 3, generator=g)


def _video_size(name: str, latent: torch.Tensor) -> dict:
    """The pixel size and frame count a video node makes ``latent`` from (Wan VAE: 8x, 4x)."""
    ratio = spacial_ratio(name)
    return dict(width=latent.shape[-1] * ratio, height=latent.shape[-2] * ratio, length=4 * (latent.shape[2] - 1) + 1)


def _scail(colour_masks: bool):
    """WanSCAILToVideo: reference image latent, pose video latent at half size (SCAIL-2: and its colour masks)."""
    def prepare(name, positive, negative, latent, g):
        size = _video_size(name, latent)
        w, h, n = size["width"], size["height"], size["length"]
        inputs = dict(positive=positive, negative=negative, vae=vae(name), batch_size=1, pose_strength=1.0,
                      pose_start=0.0, pose_end=1.0, video_frame_offset=0, previous_frame_count=5,
                      reference_image=_pictures(g, 1, h, w), pose_video=_pictures(g, n, h, w), **size)
        if colour_masks:   # one identity (red) on black, in the pose video and on the reference
            red = torch.zeros(n, h, w, 3)
            red[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4, 0] = 1.0
            inputs.update(pose_video_mask=red, reference_image_mask=red[:1], replacement_mode=False)
        positive, negative = _node("WanSCAILToVideo", **inputs)[:2]
        return positive, negative

    return prepare


def _wandancer(name, positive, negative, latent, g):
    """WanDancerEncodeAudio (music features of a clip) + WanDancerVideo (start image, music) -> conditioning."""
    size = _video_size(name, latent)
    t = torch.arange(22050 * 2) / 22050.0
    beat = (torch.sin(2 * torch.pi * 2.0 * t) > 0.95).float()   # clicks at 2 Hz over a tone
    wave = (0.3 * torch.sin(2 * torch.pi * 220.0 * t) + 0.5 * beat)[None, None]
    audio = _node("WanDancerEncodeAudio", video_frames=size["length"], audio_inject_scale=1.0,
                  audio={"waveform": wave, "sample_rate": 22050})[0]
    positive, negative = _node("WanDancerVideo", positive=positive, negative=negative, vae=vae(name),
                               start_image=_pictures(g, 1, size["height"], size["width"]), audio_encoder_output=audio,
                               **size)[:2]
    return positive, negative


def _animate2(name, positive, negative, latent, g):
    """WanAnimate2ToVideo: reference frame slot, pose video latent, pose text (latent frame 0 is the reference)."""
    ratio = spacial_ratio(name)
    w, h, n = latent.shape[-1] * ratio, latent.shape[-2] * ratio, 4 * (latent.shape[2] - 2) + 1
    positive, negative = _node("WanAnimate2ToVideo", positive=positive, negative=negative, vae=vae(name), width=w,
                               height=h, length=n, batch_size=1, video_frame_offset=0,
                               reference_image=_pictures(g, 1, h, w), pose_video=_pictures(g, n, h, w))[:2]
    return positive, negative


def _pid(name, positive, negative, latent, g):
    """PiDConditioning: the Flux latent PiD decodes (1/32 of the picture: 8x VAE, 4x upscale)."""
    lq = {"samples": torch.randn(1, 16, latent.shape[-2] // 32, latent.shape[-1] // 32, generator=g)}
    positive = _node("PiDConditioning", positive=positive, latent=lq, latent_format="flux", degrade_sigma=0.0)[0]
    negative = _node("PiDConditioning", positive=negative, latent=lq, latent_format="flux", degrade_sigma=0.0)[0]
    return positive, negative


def _seedvr2(name, positive, negative, latent, g):
    """SeedVR2Conditioning: the model's stored text embeddings + the low-quality video latent as ``condition``."""
    lq = {"samples": torch.randn(latent.shape, generator=g) * 0.5}
    return _node("SeedVR2Conditioning", model=build(name).model, vae_conditioning=lq)[:2]


def _hidream_o1(g: torch.Generator) -> list:
    """HiDream-O1's tokenizer-only text encoder: the chat template's token ids (the Qwen-3-VL backbone is the model)."""
    import comfy.text_encoders.hidream_o1 as te

    words = torch.randint(1000, 50000, (12,), generator=g).tolist()
    ids = ([te.IM_START_ID, te.USER_ID, te.NEWLINE_ID] + words
           + [te.IM_END_ID, te.NEWLINE_ID, te.IM_START_ID, te.ASSISTANT_ID, te.NEWLINE_ID, te.BOI_TOKEN_ID, te.TMS_TOKEN_ID])
    input_ids = torch.tensor([ids], dtype=torch.long)
    return [[input_ids.unsqueeze(-1).to(torch.float32), {"pooled_output": None, "text_input_ids": input_ids}]]


def _specs() -> dict[str, Spec]:
    T5 = 4096
    return {
        "sd15": Spec("SD15", _unet(4, 768), lambda g: _c(g, 77, 768)),
        "sd15_inpaint": Spec("SD15", _unet(9, 768), lambda g: _c(g, 77, 768)),
        "sdxl": Spec("SDXL", _unet(4, 2048, adm=2816, linear=True), lambda g: _c(
            g, 77, 2048, pooled_output=_pooled(g, 1280), width=64, height=64, crop_w=0, crop_h=0, target_width=64,
            target_height=64)),
        # SD20.model_type reads v-prediction off this norm's spread (std > 0.09), as for a real 768-v checkpoint
        "sd2_v": Spec("SD20", _unet(4, 1024, linear=True), lambda g: _c(g, 77, 1024),
                      state_dict={"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1, 1, 64)}),
        "sd3": Spec("SD3", dict(in_channels=16, patch_size=2, out_channels=16, depth=1, input_size=None, adm_in_channels=2048,
                                context_embedder_config={"target": "torch.nn.Linear",
                                                         "params": {"in_features": T5, "out_features": 64}},
                                num_patches=256, pos_embed_max_size=16, qk_norm="rms", pos_embed_scaling_factor=None,
                                x_block_self_attn_layers=[]),
                    lambda g: _c(g, 154, T5, pooled_output=_pooled(g, 2048)), buffers=("pos_embed",)),
        "flux": Spec("Flux", _flux(), lambda g: _c(g, 16, T5, pooled_output=_pooled(g, 768), guidance=3.5)),
        "flux_fill": Spec("FluxInpaint", _flux(in_channels=96),
                          lambda g: _c(g, 16, T5, pooled_output=_pooled(g, 768), guidance=3.5)),
        "auraflow": Spec("AuraFlow", dict(max_seq=256, cond_seq_dim=2048, n_double_layers=1, n_layers=2, dim=64, n_heads=2,
                                          global_conddim=64), lambda g: _c(g, 16, 2048)),
        # Gemma-2 hidden states and their (unpadded) mask: the model gets num_tokens from it
        "lumina2": Spec("Lumina2", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=64, cap_feat_dim=2304,
                                        n_layers=1, n_refiner_layers=1, qk_norm=True, n_heads=2, n_kv_heads=2,
                                        axes_dims=[8, 12, 12], axes_lens=[300, 512, 512], rope_theta=10000.0,
                                        ffn_dim_multiplier=4.0, multiple_of=32),
                        lambda g: _c(g, 16, 2304, attention_mask=_mask(16))),
        # T5 + the llama layers (one per llama_layers entry), pooled CLIP-L + CLIP-G
        "hidream": Spec("HiDream", dict(image_model="hidream", attention_head_dim=64, axes_dims_rope=[32, 16, 16],
                                        caption_channels=[T5, T5], max_resolution=[128, 128], in_channels=16,
                                        llama_layers=[0, 1], num_attention_heads=1, num_routed_experts=2,
                                        num_activated_experts=1, num_layers=1, num_single_layers=1, out_channels=16,
                                        patch_size=2, text_emb_dim=2048),
                        lambda g: _c(g, 16, T5, pooled_output=_pooled(g, 2048),
                                     conditioning_llama3=torch.randn(1, 2, 16, T5, generator=g))),
        "qwen_image": Spec("QwenImage", dict(image_model="qwen_image", in_channels=64, num_layers=1, attention_head_dim=32,
                                             num_attention_heads=2, axes_dims_rope=[8, 12, 12]), lambda g: _c(g, 16, 3584)),
        "wan21": Spec("WAN21_T2V", _wan(), lambda g: _c(g, 16, T5)),
        "wan22": Spec("WAN22_T2V", _wan(out_dim=48, in_dim=48), lambda g: _c(g, 16, T5)),
        # LTXV's VAE: 32x spatial compression; a small latent is still 4 x 4 cells
        "ltxv": Spec("LTXV", dict(image_model="ltxv", num_layers=1, attention_head_dim=32, num_attention_heads=2,
                                  cross_attention_dim=64, caption_channels=T5),
                     lambda g: _c(g, 16, T5, attention_mask=_mask(16), frame_rate=25), size=4),
        # its text encoder drops an all-ones attention mask (ComfyUI's HunyuanVideo cannot batch a padded mask
        # with cfg: attn_mask is built for batch 1), so none here
        "hunyuan_video": Spec("HunyuanVideo", _hunyuan(),
                              lambda g: _c(g, 16, T5, pooled_output=_pooled(g, 768), guidance=6.0)),
        # T5 only: CLIPTextEncode gives pooled_output None
        "chroma": Spec("Chroma", dict(image_model="chroma", axes_dim=[8, 12, 12], num_heads=2, mlp_ratio=4.0, theta=10000,
                                      qkv_bias=True, txt_ids_dims=[], in_channels=64, out_channels=64, hidden_size=64,
                                      context_in_dim=T5, patch_size=2, vec_in_dim=None, depth=1, depth_single_blocks=1,
                                      in_dim=64, out_dim=64, hidden_dim=64, n_layers=1),
                       lambda g: _c(g, 16, T5, pooled_output=None)),
        "cosmos_predict2": Spec("CosmosT2IPredict2", dict(
            image_model="cosmos_predict2", max_img_h=240, max_img_w=240, max_frames=128, in_channels=16, out_channels=16,
            patch_spatial=2, patch_temporal=1, model_channels=64, concat_padding_mask=True, crossattn_emb_channels=1024,
            pos_emb_cls="rope3d", pos_emb_learnable=True, pos_emb_interpolation="crop", min_fps=1, max_fps=30,
            use_adaln_lora=True, adaln_lora_dim=16, num_blocks=1, num_heads=2, extra_per_block_abs_pos_emb=False,
            rope_h_extrapolation_ratio=4.0, rope_w_extrapolation_ratio=4.0, rope_t_extrapolation_ratio=1.0,
            extra_h_extrapolation_ratio=1.0, extra_w_extrapolation_ratio=1.0, extra_t_extrapolation_ratio=1.0,
            rope_enable_fps_modulation=False), lambda g: _c(g, 16, 1024)),

        # -- in ComfyUI v0.8.0, first run through the pack here ----------------------------------------------
        # Flux.2 dev: Mistral-3 text (3 layers x 5120), guidance; the model pads the text to 512 tokens
        "flux2": Spec("Flux2", _flux2(15360, True), lambda g: _c(g, 16, 15360, pooled_output=None, guidance=4.0)),
        # Flux.2 Klein: Qwen-3 4B text (3 layers x 2560), no guidance, editing a reference picture (ReferenceLatent)
        "flux2_klein": Spec("Flux2", _flux2(7680, False), lambda g: _c(g, 16, 7680, pooled_output=None), extra=_reference),
        # Z-Image (Turbo): Lumina-2 layout with Z-Image's modulation, time scale and Qwen-3 4B text; dim 256 (its
        # time embedding is 256 wide whatever the dim, its blocks' modulation min(dim, 256): smaller does not fit)
        "z_image": Spec("ZImage", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, cap_feat_dim=2560,
                                       n_layers=1, n_refiner_layers=1, qk_norm=True, n_heads=8, n_kv_heads=8,
                                       axes_dims=[8, 12, 12], axes_lens=[1536, 512, 512], rope_theta=256.0,
                                       ffn_dim_multiplier=8.0 / 3.0, multiple_of=32, z_image_modulation=True,
                                       time_scale=1000.0, pad_tokens_multiple=32),
                        lambda g: _c(g, 16, 2560, attention_mask=_mask(16))),
        # HunyuanImage 2.1: 64-channel latent at 32x, Qwen-2.5-VL text plus the ByT5 glyph text of quoted words
        "hunyuan_image21": Spec("HunyuanImage21", _hunyuan(in_channels=64, out_channels=64, patch_size=[1, 1],
                                                           vec_in_dim=None, axes_dim=[32, 32], context_in_dim=3584,
                                                           byt5=True, guidance_embed=True, meanflow=True),
                                lambda g: _c(g, 16, 3584, conditioning_byt5small=torch.randn(1, 8, 1472, generator=g),
                                             guidance=3.5), size=4),
        # HunyuanVideo 1.5: 32-channel latent at 16x / 4x, image-condition channels (+ mask) concatenated
        "hunyuan_video15": Spec("HunyuanVideo15", _hunyuan(in_channels=65, out_channels=32, patch_size=[1, 1, 1],
                                                           vec_in_dim=None, context_in_dim=3584, byt5=True,
                                                           guidance_embed=False, use_cond_type_embedding=True,
                                                           vision_in_dim=1152, meanflow_sum=True),
                                lambda g: _c(g, 16, 3584, pooled_output=None,
                                             conditioning_byt5small=torch.randn(1, 8, 1472, generator=g))),
        # Kandinsky 5 (video lite): Qwen-2.5-VL text + pooled CLIP-L, visual embedding of latent + concat + mask
        "kandinsky5": Spec("Kandinsky5", dict(image_model="kandinsky5", model_dim=64, axes_dims=(8, 12, 12), time_dim=64,
                                              ff_dim=128, visual_embed_dim=132, num_text_blocks=1, num_visual_blocks=1),
                           lambda g: _c(g, 16, 3584, pooled_output=_pooled(g, 768), attention_mask=_mask(16))),
        "kandinsky5_image": Spec("Kandinsky5Image", dict(image_model="kandinsky5", model_dim=64, axes_dims=(8, 12, 12),
                                                         rope_scale_factor=(1.0, 1.0, 1.0), time_dim=64, ff_dim=128,
                                                         visual_embed_dim=64, num_text_blocks=1, num_visual_blocks=1),
                                 lambda g: _c(g, 16, 3584, pooled_output=_pooled(g, 768), attention_mask=_mask(16))),
        # OmniGen 2: Qwen-2.5-VL 3B text, editing a reference picture
        "omnigen2": Spec("Omnigen2", dict(image_model="omnigen2", axes_dim_rope=[8, 12, 12], axes_lens=[1024, 1664, 1664],
                                          ffn_dim_multiplier=None, hidden_size=64, in_channels=16, multiple_of=32,
                                          norm_eps=1e-05, num_attention_heads=2, num_kv_heads=1, num_layers=1,
                                          num_refiner_layers=1, out_channels=None, patch_size=2, text_feat_dim=2048,
                                          timestep_scale=1000.0),
                         lambda g: _c(g, 16, 2048, attention_mask=_mask(16)), extra=_reference),
        # Chroma Radiance: pixel space (the latent is the picture, 3 channels), 16-pixel patches, NeRF head
        "chroma_radiance": Spec("ChromaRadiance", _chroma_radiance, lambda g: _c(g, 16, T5, pooled_output=None), size=32),
        "pixart_alpha": Spec("PixArtAlpha", dict(image_model="pixart_alpha", num_heads=2, patch_size=2, hidden_size=96,
                                                 in_channels=4, depth=1, model_max_length=120, input_size=16,
                                                 pe_interpolation=0.25, micro_condition=True),
                             lambda g: _c(g, 16, T5, width=320, height=320), size=40,
                             buffers=("y_embedder.y_embedding",)),
        "pixart_sigma": Spec("PixArtSigma", dict(image_model="pixart_sigma", num_heads=2, patch_size=2, hidden_size=64,
                                                 in_channels=4, depth=1, model_max_length=300, input_size=16,
                                                 pe_interpolation=0.25, micro_condition=False),
                             lambda g: _c(g, 16, T5), size=40, buffers=("y_embedder.y_embedding",)),
        # Mochi: 12-channel latent at 8x / 6x, T5 text and its mask (its blocks assert a 12288-wide visual MLP and its
        # T5 attention pool is 4096 wide: 52M parameters, the largest here)
        "mochi": Spec("GenmoMochi", dict(image_model="mochi_preview", depth=1, patch_size=2, num_heads=2, hidden_size_x=64,
                                         hidden_size_y=32, mlp_ratio_x=192.0, mlp_ratio_y=4.0, learn_sigma=False,
                                         in_channels=12, qk_norm=True, qkv_bias=False, out_bias=True, attn_drop=0.0,
                                         patch_embed_bias=True, posenc_preserve_area=True, timestep_mlp_bias=True,
                                         attend_to_padding=False, timestep_scale=1000.0, use_t5=True, t5_feat_dim=T5,
                                         t5_token_length=256, rope_theta=10000.0),
                      lambda g: _c(g, 16, T5, attention_mask=_mask(16))),
        # LTX-2 (audio + video) run on its video stream alone: the latent of EmptyLTXVLatentVideo (an audio + video
        # latent is nested, which the pack refuses: tests/test_comfy_families.py). The text (video + audio halves)
        # is 2 x caption_channels wide; caption_channels shrunk to 64 (newer ComfyUI's text connector is as wide)
        "ltxav": Spec("LTXAV", dict(image_model="ltxav", num_layers=1, attention_head_dim=32, num_attention_heads=2,
                                    cross_attention_dim=64, audio_cross_attention_dim=32, audio_attention_head_dim=16,
                                    audio_num_attention_heads=2, caption_channels=64, connector_attention_head_dim=32,
                                    connector_num_attention_heads=2, connector_num_layers=1,
                                    use_keyframes_abs_pos_embedding=False),
                      lambda g: _c(g, 16, 2 * 64, attention_mask=_mask(16), frame_rate=25), size=4),

        # -- new in ComfyUI v0.33.0 --------------------------------------------------------------------------
        # Z-Image pixel space: the Z-Image backbone on 16-pixel RGB patches with a pixel decoder head
        "zimage_pixel": Spec("ZImagePixelSpace", dict(
            image_model="zimage_pixel", patch_size=16, in_channels=3, dim=256, cap_feat_dim=2560, n_layers=1,
            n_refiner_layers=1, qk_norm=True, n_heads=8, n_kv_heads=8, axes_dims=[8, 12, 12], axes_lens=[1536, 512, 512],
            rope_theta=256.0, ffn_dim_multiplier=8.0 / 3.0, multiple_of=32, z_image_modulation=True, time_scale=1000.0,
            pad_tokens_multiple=32, decoder_in_channels=768, decoder_hidden_size=32, decoder_num_res_blocks=1,
            decoder_max_freqs=8), lambda g: _c(g, 16, 2560, attention_mask=_mask(16)), size=32, since="0.33.0"),
        # PixelDiT: pixel space, 16-pixel patches, Gemma-2 2B text
        "pixeldit_t2i": Spec("PixelDiTT2I", dict(image_model="pixeldit_t2i", in_channels=3, num_groups=2, hidden_size=64,
                                                 pixel_hidden_size=16, pixel_attn_hidden_size=32, pixel_num_groups=2,
                                                 patch_depth=1, pixel_depth=1, patch_size=16, txt_embed_dim=2304,
                                                 txt_max_length=300),
                             lambda g: _c(g, 16, 2304, attention_mask=_mask(16)), size=32, since="0.33.0"),
        # LongCat-Image: the Flux layout with Qwen-2.5-VL 7B text, no pooled vector, no guidance
        "longcat_image": Spec("LongCatImage", _flux(context_in_dim=3584, vec_in_dim=None, guidance_embed=False,
                                                    txt_ids_dims=[1, 2]),
                              lambda g: _c(g, 16, 3584, pooled_output=None), since="0.33.0"),
        # ERNIE-Image: Flux.2 latent (128 channels at 16x), Ministral-3 3B text
        "ernie_image": Spec("ErnieImage", dict(image_model="ernie", hidden_size=64, num_attention_heads=2, num_layers=1,
                                               ffn_hidden_size=128, in_channels=128, out_channels=128, patch_size=1,
                                               text_in_dim=3072, rope_axes_dim=(8, 12, 12)),
                            lambda g: _c(g, 16, 3072, pooled_output=None), since="0.33.0"),
        # Lens: Flux.2 latent, GPT-OSS 20B text from 4 layers (concatenated: 4 x 2880) and its mask
        "lens": Spec("Lens", dict(image_model="lens", in_channels=128, out_channels=32, num_layers=1, attention_head_dim=32,
                                  num_attention_heads=2, enc_hidden_dim=2880, axes_dims_rope=(8, 12, 12),
                                  multi_layer_encoder_feature=True, selected_layer_index=(0, 1, 2, 3)),
                     lambda g: _c(g, 16, 4 * 2880, pooled_output=None, attention_mask=_mask(16)), since="0.33.0"),
        # Mage-Flow: the Qwen-Image layout on the Flux.2 latent, Qwen-3-VL 4B text
        "mage_flow": Spec("MageFlow", dict(image_model="mage_flow", in_channels=128, out_channels=128, num_layers=1,
                                           attention_head_dim=32, num_attention_heads=2, joint_attention_dim=2560,
                                           axes_dims_rope=(8, 12, 12)),
                          lambda g: _c(g, 16, 2560, pooled_output=None), since="0.33.0"),
        # Ideogram 4: Flux.2 latent, Qwen-3-VL 8B text features of many layers (53248 wide)
        # (its class fixes the sizes in unet_extra_config: shrunk after it is applied)
        "ideogram4": Spec("Ideogram4", dict(image_model="ideogram4", in_channels=128, num_layers=1),
                          lambda g: _c(g, 16, 53248, pooled_output=None, attention_mask=_mask(16)), since="0.33.0",
                          fixed=dict(num_attention_heads=2, attention_head_dim=32, intermediate_size=128, adaln_dim=64,
                                     mrope_section=[4, 6, 6])),
        # Krea 2: single-stream DiT on the Wan 2.1 latent; Qwen-3-VL text of 12 layers fused by its text transformer,
        # which is as wide as the text: the text width is shrunk 2560 -> 64 (12 layers x 64)
        "krea2": Spec("Krea2", dict(image_model="krea2", features=64, channels=16, patch=2, layers=1, heads=2, kvheads=2,
                                    txtlayers=12, txtdim=64, txtheads=2, txtkvheads=2, multiplier=2),
                      lambda g: _c(g, 16, 12 * 64, pooled_output=None), since="0.33.0"),
        # JoyImage: 3D-patch DiT on the Wan 2.1 latent, Qwen-3-VL 8B text
        "joyimage": Spec("JoyImage", dict(image_model="joyimage", in_channels=16, hidden_size=64, patch_size=[1, 2, 2],
                                          num_layers=1, num_attention_heads=2, text_dim=4096),
                         lambda g: _c(g, 16, 4096, pooled_output=None), since="0.33.0",
                         fixed=dict(rope_dim_list=[8, 12, 12])),
        # Boogu: OmniGen 2 with dual-stream layers, Qwen-3-VL 8B instructions, editing a reference picture
        "boogu": Spec("Boogu", dict(image_model="boogu", hidden_size=64, num_layers=1, num_double_stream_layers=1,
                                    num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=32,
                                    axes_dim_rope=(8, 12, 12), instruction_feat_dim=4096),
                      lambda g: _c(g, 16, 4096, pooled_output=None, attention_mask=_mask(16)), extra=_reference,
                      since="0.33.0"),
        # CogVideoX: v-prediction (DDPM, zero-SNR), T5 text; I2V adds the image latent, Inpaint image + mask latents
        "cogvideox_t2v": Spec("CogVideoX_T2V", _cogvideox(16), lambda g: _c(g, 16, T5), since="0.33.0"),
        "cogvideox_i2v": Spec("CogVideoX_I2V", _cogvideox(32), lambda g: _c(g, 16, T5), extra=_concat(16),
                              since="0.33.0"),
        "cogvideox_inpaint": Spec("CogVideoX_Inpaint", _cogvideox(48), lambda g: _c(g, 16, T5), extra=_concat(32),
                                  since="0.33.0"),
        # Wan 2.1 causal autoregressive (self-forcing) and FlowRVS (image-to-image flow) variants
        "wan21_causal_ar": Spec("WAN21_CausalAR_T2V", _wan(causal_ar=True), lambda g: _c(g, 16, T5), since="0.33.0"),
        "wan21_flow_rvs": Spec("WAN21_FlowRVS", _wan(model_type="flow_rvs"), lambda g: _c(g, 16, T5), since="0.33.0"),
        # Wan SCAIL / SCAIL-2 (character animation), WanDancer (music to dance) and Animate 2 (pose transfer):
        # conditioned by their own ComfyUI nodes with the tiny VAE (reference image, pose video, masks, music)
        "wan21_scail": Spec("WAN21_SCAIL", _wan(model_type="scail", in_dim=20), lambda g: _c(g, 16, T5),
                            prepare=_scail(False), since="0.33.0"),
        "wan21_scail2": Spec("WAN21_SCAIL2", _wan(model_type="scail2", in_dim=20), lambda g: _c(g, 16, T5),
                             prepare=_scail(True), since="0.33.0"),
        "wan22_wandancer": Spec("WAN22_WanDancer", _wan(model_type="wandancer", in_dim=36, audio_inject_layers=[0],
                                                        music_dim=32, music_heads=2, music_latent_dim=32),
                                lambda g: _c(g, 16, T5), prepare=_wandancer, since="0.33.0"),
        "wan_animate2": Spec("WAN_Animate2", _wan(model_type="animate2", in_dim=36), lambda g: _c(g, 16, T5),
                             prepare=_animate2, frames=2, since="0.33.0"),
        # PiD: pixel-space decoder of a Flux latent (PixelDiT layout + the low-quality latent's projection)
        "pid": Spec("PiD", dict(image_model="pid", lq_hidden_dim=32, lq_num_res_blocks=1, lq_interval=1,
                                lq_latent_channels=16, latent_spatial_down_factor=8, in_channels=3, num_groups=2,
                                hidden_size=64, pixel_hidden_size=16, pixel_attn_hidden_size=32, pixel_num_groups=2,
                                patch_depth=1, pixel_depth=1, patch_size=16, txt_embed_dim=2304, txt_max_length=300),
                    lambda g: _c(g, 16, 2304, attention_mask=_mask(16)), prepare=_pid, size=64, since="0.33.0"),
        # HiDream-O1: pixel space, 32-pixel patches, the Qwen-3-VL backbone is the model (token ids as conditioning)
        "hidream_o1": Spec("HiDreamO1", dict(image_model="hidream_o1", text_config_overrides=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            head_dim=32, rope_dims=[4, 6, 6]), vision_config_overrides=dict(
            hidden_size=32, num_heads=2, intermediate_size=64, depth=1, deepstack_visual_indexes=())),
            _hidream_o1, size=64, since="0.33.0"),
        # SeedVR2 (video restoration): its text embeddings live in the checkpoint; SeedVR2Conditioning adds the
        # low-quality latent. Two blocks: its window and shifted-window blocks alternate
        "seedvr2": Spec("SeedVR2", dict(image_model="seedvr2", vid_dim=64, heads=2, head_dim=32, num_layers=2,
                                        mm_layers=2, norm_eps=1e-5, mlp_type="swiglu", rope_dim=32,
                                        vid_out_norm=True, txt_in_dim=5120),
                        lambda g: _c(g, 58, 5120), prepare=_seedvr2, since="0.33.0",
                        buffers=("positive_conditioning", "negative_conditioning")),
    }


def _others() -> dict[str, tuple]:
    """Audio and 3D families, for the pack's refusal of their latents: name -> (class, unet_config, latent shape)."""
    return {
        "stable_audio": ("StableAudio", dict(audio_model="dit1.0", io_channels=64, embed_dim=64, depth=1, num_heads=2,
                                             cond_token_dim=768, project_cond_tokens=True, global_cond_dim=1536,
                                             input_concat_dim=0), (1, 64, 32)),
        # ACE-Step's lyric encoder has fixed sizes (83M parameters): its network is not built (ComfyUI's
        # disable_unet_model_creation) -- the pack refuses the latent before any model call
        "ace_step": ("ACEStep", dict(audio_model="ace", disable_unet_model_creation=True), (1, 8, 16, 32)),
        "hunyuan3d_v2": ("Hunyuan3Dv2", dict(image_model="hunyuan3d2", in_channels=64, context_in_dim=1536, hidden_size=64,
                                             mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1, qkv_bias=True,
                                             guidance_embed=False), (1, 3072, 64)),
    }


#: audio and 3D families (not in the matrix: the pack refuses their latents)
OTHERS = tuple(_others())


def other_model(name: str):
    """A ModelPatcher of one of :data:`OTHERS` (tiny, random) and a latent of its layout."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    klass, unet_config, shape = _others()[name]
    config = getattr(comfy.supported_models, klass)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    state_dict = {}
    if klass == "StableAudio":   # its seconds_start / seconds_total number embedders load from the checkpoint
        import comfy.ldm.audio.embedders as embedders

        for part in ("seconds_start", "seconds_total"):
            number = embedders.NumberConditioner(768, min_val=0, max_val=512)
            _init(number, 1)
            state_dict.update({f"conditioner.conditioners.{part}.{k}": v for k, v in number.state_dict().items()})
    base = config.get_model(state_dict, device="cpu")
    if hasattr(base, "diffusion_model"):
        _init(base.diffusion_model, 0)
    device = comfy.model_management.get_torch_device()
    patcher = comfy.model_patcher.ModelPatcher(base, load_device=device,
                                               offload_device=comfy.model_management.unet_offload_device())
    return patcher, torch.randn(shape, generator=torch.Generator().manual_seed(7)) * 0.5


_SPECS: dict[str, Spec] | None = None


def specs() -> dict[str, Spec]:
    global _SPECS
    if _SPECS is None:
        _SPECS = _specs()
    return _SPECS


#: every family the matrix covers (the order the tests run them; a family the running ComfyUI lacks is skipped)
NAMES = tuple(_specs())


def comfy_version() -> str:
    try:
        import comfyui_version

        return str(comfyui_version.__version__)
    except ImportError:   # pragma: no cover - very old ComfyUI
        return "unknown"


def unavailable(name: str) -> str | None:
    """Why the running ComfyUI cannot build this family (it lacks the model class), or None."""
    import comfy.supported_models

    spec = specs()[name]
    if hasattr(comfy.supported_models, spec.klass):
        return None
    return (f"{name}: ComfyUI {comfy_version()} has no comfy.supported_models.{spec.klass} "
            f"(the family is tested on ComfyUI v{spec.since})")


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

    @property
    def ratio(self) -> int:
        """Picture pixels per latent cell (side) of this family's VAE."""
        return spacial_ratio(self.name)


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


def _config(name: str) -> dict:
    spec = specs()[name]
    return dict(spec.config() if callable(spec.config) else spec.config)


def model_config(name: str):
    """The family's ``comfy.supported_models`` config object (float32)."""
    import comfy.supported_models

    why = unavailable(name)
    if why:
        raise LookupError(why)
    config = getattr(comfy.supported_models, specs()[name].klass)(_config(name))
    config.unet_config.update(specs()[name].fixed)
    config.set_inference_dtype(torch.float32, None)
    return config


def model_patcher(name: str, seed: int = 0):
    """The family's ModelPatcher, built through ``comfy.supported_models`` (float32, CPU)."""
    import comfy.model_management
    import comfy.model_patcher

    base = model_config(name).get_model(dict(specs()[name].state_dict), device="cpu")
    _init(base.diffusion_model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for buffer in specs()[name].buffers:
            b = base.diffusion_model.get_buffer(buffer)
            b.copy_(torch.randn(b.shape, generator=gen))
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(base, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


_FORMATS: dict = {}


def latent_format(name: str):
    if name not in _FORMATS:
        _FORMATS[name] = model_config(name).latent_format
    return _FORMATS[name]


def is_video(name: str) -> bool:
    """The family's latent is 5-D (batch, channels, frames, height, width)."""
    return int(getattr(latent_format(name), "latent_dimensions", 2)) == 3


#: picture pixels per latent cell of the families whose latent format predates ``spacial_downscale_ratio`` (v0.8.0)
_RATIO = {"Flux2": 16, "Wan22": 16, "HunyuanImage21": 32, "HunyuanVideo15": 16, "LTXV": 32, "LTXAV": 32,
          "ChromaRadiance": 1}


def spacial_ratio(name: str) -> int:
    fmt = latent_format(name)
    ratio = getattr(fmt, "spacial_downscale_ratio", None)
    return int(ratio) if ratio is not None else _RATIO.get(type(fmt).__name__, 8)


def conditioning(name: str, seed: int, latent: torch.Tensor | None = None) -> list:
    """A CONDITIONING of the family's shapes (what its text encoder would give), random with ``seed``; with the
    extra keys ComfyUI's own conditioning nodes add for ``latent`` (reference latents, concat images)."""
    g = torch.Generator().manual_seed(seed)
    spec = specs()[name]
    cond = spec.cond(g)
    if spec.extra is not None and latent is not None:
        g2 = torch.Generator().manual_seed(100 + seed)
        cond = [[t, {**d, **spec.extra(latent, g2)}] for t, d in cond]
    return cond


def latent_shape(name: str, frames: int = 1, size: int | None = None) -> tuple:
    """A small latent of the family's layout (``frames`` latent frames for the video families)."""
    size = size or specs()[name].size
    channels = int(latent_format(name).latent_channels)
    if is_video(name):
        return (1, channels, frames, size, size)
    return (1, channels, size, size)


_CACHE: dict[str, Family] = {}


def build(name: str, frames: int | None = None) -> Family:
    """The family with its conditioning and a random latent (cached per process; one model per family)."""
    frames = frames or specs()[name].frames
    key = f"{name}/{frames}"
    if key not in _CACHE:
        same = [v for k, v in _CACHE.items() if k.startswith(name + "/")]
        model = same[0].model if same else model_patcher(name)
        latent = torch.randn(latent_shape(name, frames), generator=torch.Generator().manual_seed(7)) * 0.5
        positive, negative = conditioning(name, 1, latent), conditioning(name, 2, latent)
        _CACHE[key] = Family(name, model, positive, negative, latent)
        prepare = specs()[name].prepare
        if prepare is not None:   # after caching: the node may need the family's model
            _CACHE[key].positive, _CACHE[key].negative = prepare(name, positive, negative, latent,
                                                                 torch.Generator().manual_seed(11))
    return _CACHE[key]


def vae(name: str, seed: int = 3):
    """A tiny random VAE ComfyUI detects for the family's latent, or None.

    Image latents of any channel count: TAESD (as taesd / taesd3 / taef1 / taef2); pixel-space latents: ComfyUI's
    pixel-space conversion VAE; 16-, 32- and 48-channel video latents: TAEHV (as lighttaew2_1 / lighttae_hv15 /
    taew2_2), 128-channel ones where ComfyUI's TAEHV has LTX-2's layout (v0.3x). Other video latents (Mochi's 12
    channels; LTXV's 128 on v0.8.0) have no small VAE ComfyUI can build: None.
    """
    import comfy.sd
    import comfy.taesd.taehv as taehv
    import comfy.taesd.taesd as taesd

    from .tiny import _reinit

    channels = latent_shape(name)[1]
    if spacial_ratio(name) == 1:
        return comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})
    metadata = None
    if is_video(name):
        if channels not in (16, 32, 48, 128):
            return None
        model = _reinit(taehv.TAEHV(latent_channels=channels), seed)
        if channels == 128 and model.patch_size != 4:   # no LTX-2 layout in this ComfyUI
            return None
    else:   # TAESD picks its own layout for the channel count (ComfyUI v0.3x: taef2's for 128, named in metadata)
        model = _reinit(taesd.TAESD(latent_channels=channels), seed)
        metadata = {"tae_latent_channels": channels}
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return comfy.sd.VAE(sd=sd, metadata=metadata)
