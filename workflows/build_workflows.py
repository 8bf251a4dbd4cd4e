"""Build workflows/*.json in the real frontend from the specs below and save what the frontend
exports (``app.graphToPrompt().workflow``). The files are named by their titles in ComfyUI's template
browser (``dde_world.ui2api.TITLES``); ``--thumbnails`` writes the cards' pictures (``<title>.jpg``).

Run from the pack root with ComfyUI's Python: ``COMFYUI_PATH=~/comfy/ComfyUI python workflows/build_workflows.py``.
It starts a throwaway ComfyUI server (127.0.0.1) with the pack and opens it in headless chromium.
"""
import json, os, sys, uuid

PACK = os.environ.get("DDE_PACK_ROOT", os.getcwd())
sys.path.insert(0, os.path.join(PACK, "tests"))
from dde_world import browser as B  # noqa: E402
from dde_world.locate import find_comfyui  # noqa: E402
from dde_world.server import ComfyServer  # noqa: E402
from dde_world.ui2api import TITLES  # noqa: E402

OUT = os.path.join(PACK, "workflows")
SD15 = "v1-5-pruned-emaonly-fp16.safetensors"
SCENE, DEPTH, MASK = "example_scene.png", "example_depth.png", "example_mask.png"
EDITED = "example_edited.png"
NEG = "blurry, low quality, distorted"


def N(key, type, pos, size=None, title=None, **widgets):
    """A node; ``size`` None: the node's own minimum (pack nodes grow when their preview first arrives, so
    no empty preview area is reserved before the first run)."""
    d = {"key": key, "type": type, "pos": pos, "widgets": widgets}
    if size: d["size"] = size
    if title: d["title"] = title
    return d


def note(key, pos, text, size=(440, 220)):
    return {"key": key, "type": "Note", "pos": pos, "size": [330, size[1] + 120], "widgets": {"text": text},
            "color": "#432", "bgcolor": "#653"}


def base_nodes(prompt, ckpt=SD15, neg=NEG, y=0):
    return [
        N("ckpt", "CheckpointLoaderSimple", [0, y + 0], [320, 100], ckpt_name=ckpt),
        N("img", "LoadImage", [0, y + 160], [320, 340], title="Load picture to edit", image=SCENE),
        N("pos", "CLIPTextEncode", [360, y + 0], [400, 150], title="Positive prompt (the edit)", text=prompt),
        N("neg", "CLIPTextEncode", [360, y + 200], [400, 130], title="Negative prompt", text=neg),
        N("enc", "VAEEncode", [360, y + 380], [200, 50]),
    ]


def base_links(enc_vae="ckpt"):
    return [["ckpt", "CLIP", "pos", "clip"], ["ckpt", "CLIP", "neg", "clip"],
            ["img", "IMAGE", "enc", "pixels"], [enc_vae, "VAE", "enc", "vae"]]


def tail(sampler, map_key, map_out, x, prefix, vae="ckpt", blend="map", feather=0, y=0):
    nodes = [
        N("dec", "VAEDecode", [x, y + 0], [200, 50]),
        N("comp", "DDE_CompositeByChangeMap", [x, y + 100], [300, 260], blend=blend, feather=feather, invert=False,
          difference_threshold=0.0, difference_contrast=2.0, mask_influence=0.0),
        N("save", "SaveImage", [x + 360, y + 0], [360, 400], filename_prefix=prefix),
    ]
    links = [[sampler, 0, "dec", "samples"], [vae, "VAE", "dec", "vae"], ["img", "IMAGE", "comp", "original"],
             ["dec", "IMAGE", "comp", "edited"], [map_key, map_out, "comp", "change_map"],
             ["comp", "IMAGE", "save", "images"]]
    return nodes, links


def dks(key, pos, mode="step", steps=25, cfg=7.0, sampler="euler", scheduler="normal", title=None, denoise=1.0,
        softness=0.0, fractional=False, prefill="original", prefill_above=0.5):
    return N(key, "DDE_DifferentialKSampler", pos, [320, 500], title=title, seed=42, **{"seed:control": "fixed"},
             steps=steps, cfg=cfg, sampler_name=sampler, scheduler=scheduler, denoise=denoise, mode=mode, invert=False,
             strength=1.0, softness=softness, fractional=fractional, prefill=prefill, prefill_above=prefill_above)


def sampler_links(key, model="ckpt", pos="pos", neg="neg", latent="enc", change_map=("map", 0)):
    return [[model, "MODEL", key, "model"], [pos, 0, key, "positive"], [neg, 0, key, "negative"],
            [latent, 0, key, "latent_image"], [change_map[0], change_map[1], key, "change_map"]]


def diffedit_nodes():
    return [
        N("ref", "CLIPTextEncode", [360, 480], [400, 110], title="Reference prompt (what the picture shows)",
          text="a red ball on a grassy field under a blue sky"),
        N("mask", "DDE_DiffEditMask", [800, 0], None, strength=0.5, n=10, seed=0, **{"seed:control": "fixed"},
          cfg=1.0, threshold_method="rescale", threshold=0.5, clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0,
          batch_size=0),
    ]


def diffedit_links():
    return [["ckpt", "CLIP", "ref", "clip"], ["ckpt", "MODEL", "mask", "model"], ["pos", 0, "mask", "query"],
            ["enc", 0, "mask", "latent"], ["ref", 0, "mask", "reference"], ["img", "IMAGE", "mask", "image"]]


QUERY = "a yellow cardboard box on a grassy field under a blue sky"

def soft_inpainting_gradient():
    """Soft inpainting with a gradient map."""
    n = base_nodes("a shiny golden apple on a grassy field, detailed photo")
    n += [N("map", "DDE_RadialGradientMap", [800, 0], None, width=512, height=512, batch_size=1, centre_x=0.5,
            centre_y=0.55, inner_radius=0.2, outer_radius=0.4, curve="smoothstep", gamma=1.0, invert=False),
          dks("ks", [1180, 0])]
    l = base_links() + [["img", "IMAGE", "map", "reference"]] + sampler_links("ks")
    t = tail("ks", "map", 0, 1560, "differential_edit/soft_inpainting")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "Soft inpainting with a gradient change map (Differential Diffusion).\n\n"
        "1. Pick your checkpoint in Load Checkpoint (any SD1.5/SDXL model).\n2. Load your picture.\n"
        "3. Move the Radial Gradient's centre and radii over the region to change: white (1) = change fully, "
        "black (0) = keep exactly, grey = change a little (the map takes its size from the picture).\n"
        "4. Write what the region should become in the positive prompt.\n\n"
        "The map appears in the gradient node after a run. Composite Original by Change Map puts the original "
        "pixels back where the map is 0 (the VAE round trip would blur them).", (440, 260)))
    return {"nodes": n, "links": l}


def diffedit_mask_edit():
    """DiffEdit automatic mask -> edit."""
    n = base_nodes(QUERY) + diffedit_nodes()
    n += [N("edit", "DDE_DiffEditEdit", [1180, 0], [320, 330], steps=50, encode_ratio=0.8, cfg=7.5, scheduler="normal",
            refine=2, invert=False),
          N("pv", "PreviewImage", [800, 780], [320, 320], title="Heat map and mask outline")]
    l = base_links() + diffedit_links() + [
        ["ckpt", "MODEL", "edit", "model"], ["pos", 0, "edit", "query"], ["enc", 0, "edit", "latent"],
        ["mask", "mask", "edit", "mask"], ["ref", 0, "edit", "reference"], ["neg", 0, "edit", "negative"],
        ["mask", "preview", "pv", "images"]]
    t = tail("edit", "mask", "mask", 1560, "differential_edit/diffedit_edit", blend="changed", feather=4)
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "DiffEdit: the mask is found automatically from two prompts.\n\n"
        "DiffEdit Mask noises the picture, compares the model's predictions for the edit prompt (positive) "
        "and the reference prompt (what the picture shows now), and thresholds the difference: the heat map "
        "is drawn over the picture inside the node after a run.\n"
        "DiffEdit Edit inverts the picture to encode_ratio and decodes it with the edit prompt, keeping "
        "everything outside the mask on the inverted path, so the rest of the picture stays as it was.\n\n"
        "Pick your checkpoint, load your picture, describe it in the reference prompt and the edit in the "
        "positive prompt.", (440, 280)))
    return {"nodes": n, "links": l}


def diffedit_semantic_differential():
    """DiffEdit heat -> semantic change map -> Differential KSampler."""
    n = base_nodes(QUERY) + diffedit_nodes()
    n += [N("sem", "DDE_SemanticChangeMap", [800, 780], None, floor=0.0, ceiling=1.0, gamma=1.5, normalize=False),
          dict(N("steps", "PrimitiveNode", [1180, 470], [260, 80], title="steps"), value=25),
          dks("ks", [1180, 0]),
          N("sched", "DDE_SchedulePreview", [1180, 600], None, sampler_name="euler", scheduler="normal",
            denoise=1.0, mode="step", invert=False),
          N("pv", "PreviewImage", [1560, 600], [300, 260], title="Schedule preview")]
    l = base_links() + diffedit_links() + sampler_links("ks", pos="pos", change_map=("sem", 0)) + [
        ["mask", "heat", "sem", "heat"], ["ckpt", "MODEL", "sched", "model"], ["sem", 0, "sched", "change_map"],
        ["enc", 0, "sched", "latent_image"], ["sched", "preview", "pv", "images"],
        ["steps", 0, "ks", "steps"], ["steps", 0, "sched", "steps"]]
    t = tail("ks", "sem", 0, 1560, "differential_edit/diffedit_semantic")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "DiffEdit heat map -> semantic change map -> Differential KSampler.\n\n"
        "Instead of a hard mask, the DiffEdit heat (how much the two prompts disagree at each pixel) becomes a "
        "graded change map: out = floor + (ceiling - floor) * heat ^ gamma. Regions unrelated to the edit keep "
        "their pixels (0), the object changes fully, and the edges blend.\n"
        "The Schedule Preview (same steps through the 'steps' primitive) shows the start step of every latent "
        "cell before you sample.", (440, 240)))
    return {"nodes": n, "links": l}


def strength_fan():
    """Strength Fan."""
    n = base_nodes("an oil painting of a red ball on a meadow, thick brush strokes")
    n += [N("fan", "DDE_StrengthFan", [800, 0], None, seed=42, **{"seed:control": "fixed"}, steps=20,
            sampler_name="euler", scheduler="normal", cfg=7.0, strengths="0, 0.2, 0.4, 0.6, 0.8, 1", mode="step",
            layout="grid", columns=0),
          N("save", "SaveImage", [1180, 0], [420, 460], filename_prefix="differential_edit/strength_fan")]
    l = base_links() + [["ckpt", "MODEL", "fan", "model"], ["pos", 0, "fan", "positive"], ["neg", 0, "fan", "negative"],
                        ["enc", 0, "fan", "latent_image"], ["ckpt", "VAE", "fan", "vae"], ["fan", "fan", "save", "images"]]
    n.append(note("note", [0, 540], "Strength Fan: the same edit at several uniform strengths in one batched run "
        "(every panel shares one noise), laid out as a labelled grid.\n\n"
        "Use it to calibrate a change map: the panel at strength s shows what a map value s does with this model, "
        "sampler, scheduler and steps. Set layout to 'fan' for one picture sweeping from the first strength to "
        "the last.", (440, 200)))
    return {"nodes": n, "links": l}


def depth_change_map():
    """Depth-based change map."""
    n = base_nodes("a snowy mountain range at dusk behind a red ball, detailed photo")
    n += [N("depth", "LoadImage", [360, 480], [320, 340], title="Load depth image (white = near)", image=DEPTH),
          N("map", "DDE_DepthChangeMap", [800, 0], None, change="far", near_value=0.9, far_value=0.0,
            curve="smoothstep", gamma=1.0),
          dks("ks", [1180, 0])]
    l = base_links() + [["depth", "IMAGE", "map", "depth"]] + sampler_links("ks")
    t = tail("ks", "map", 0, 1560, "differential_edit/depth_change_map")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "Change by depth: the background changes, the foreground stays.\n\n"
        "Change Map from Depth turns a depth image (white = near, e.g. from Depth Anything, MiDaS or Zoe) into a "
        "change map: change = far makes far pixels change most. Replace 'Load depth image' with your depth "
        "estimator's IMAGE output, or set change = near to edit the foreground instead. near_value/far_value clip "
        "the depth range: here everything at depth 0.9 or nearer counts as fully near and is kept exactly.", (440, 220)))
    return {"nodes": n, "links": l}


def sdxl_base_refiner_split():
    """SDXL base + refiner split with the Advanced sampler."""
    n = [N("ckpt", "CheckpointLoaderSimple", [0, 0], [320, 100], title="Load Checkpoint (base)",
           ckpt_name="sd_xl_base_1.0.safetensors"),
         N("refiner", "CheckpointLoaderSimple", [0, 140], [320, 100], title="Load Checkpoint (refiner)",
           ckpt_name="sd_xl_refiner_1.0.safetensors"),
         N("img", "LoadImage", [0, 280], [320, 340], title="Load picture to edit", image=SCENE),
         N("pos", "CLIPTextEncode", [360, 0], [400, 130], title="Positive prompt (base)",
           text="a shiny golden apple on a grassy field, detailed photo"),
         N("neg", "CLIPTextEncode", [360, 170], [400, 110], title="Negative prompt (base)", text=NEG),
         N("rpos", "CLIPTextEncode", [360, 320], [400, 130], title="Positive prompt (refiner)",
           text="a shiny golden apple on a grassy field, detailed photo"),
         N("rneg", "CLIPTextEncode", [360, 490], [400, 110], title="Negative prompt (refiner)", text=NEG),
         N("enc", "VAEEncode", [360, 640], [200, 50]),
         N("map", "DDE_RadialGradientMap", [800, 0], None, width=1024, height=1024, batch_size=1, centre_x=0.5,
           centre_y=0.55, inner_radius=0.2, outer_radius=0.4, curve="smoothstep", gamma=1.0, invert=False),
         {"key": "reroute", "type": "Reroute", "pos": [1180, 620]},
         dict(N("steps", "PrimitiveNode", [800, 660], [260, 80], title="total steps"), value=25),
         dict(N("split", "PrimitiveNode", [800, 780], [260, 80], title="refiner starts at step"), value=20),
         N("base_ks", "DDE_DifferentialKSamplerAdvanced", [1180, 0], [330, 520], title="Differential KSampler (base)",
           add_noise="enable", noise_seed=42, **{"noise_seed:control": "fixed"}, cfg=7.0, sampler_name="euler",
           scheduler="normal", start_at_step=0, return_with_leftover_noise="enable", mode="step", invert=False,
           strength=1.0, softness=0.0, fractional=False, prefill="original", prefill_above=0.5),
         N("ref_ks", "DDE_DifferentialKSamplerAdvanced", [1560, 0], [330, 520], title="Differential KSampler (refiner)",
           add_noise="disable", noise_seed=42, **{"noise_seed:control": "fixed"}, cfg=7.0, sampler_name="euler",
           scheduler="normal", end_at_step=10000, return_with_leftover_noise="disable", mode="step", invert=False,
           strength=1.0, softness=0.0, fractional=False, prefill="original", prefill_above=0.5)]
    l = [["ckpt", "CLIP", "pos", "clip"], ["ckpt", "CLIP", "neg", "clip"], ["refiner", "CLIP", "rpos", "clip"],
         ["refiner", "CLIP", "rneg", "clip"], ["img", "IMAGE", "enc", "pixels"], ["ckpt", "VAE", "enc", "vae"],
         ["img", "IMAGE", "map", "reference"], ["map", 0, "reroute", ""]]
    l += sampler_links("base_ks", change_map=("reroute", 0)) + [["steps", 0, "base_ks", "steps"],
         ["split", 0, "base_ks", "end_at_step"],
         ["refiner", "MODEL", "ref_ks", "model"], ["rpos", 0, "ref_ks", "positive"], ["rneg", 0, "ref_ks", "negative"],
         ["base_ks", 0, "ref_ks", "latent_image"], ["reroute", 0, "ref_ks", "change_map"],
         ["steps", 0, "ref_ks", "steps"], ["split", 0, "ref_ks", "start_at_step"]]
    t = tail("ref_ks", "reroute", 0, 1940, "differential_edit/sdxl_base_refiner")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 660], "SDXL base + refiner with one change map.\n\n"
        "Both Differential KSampler (Advanced) nodes use the same map, total steps and seed. The base samples steps "
        "0 to 'refiner starts at step' and returns its leftover noise; the refiner continues from there "
        "(add_noise disable). The change map's threshold schedule is global over all steps, so the split gives "
        "the same edit as one pass.\n\n"
        "Pick the base and refiner checkpoints. Plain CLIP Text Encode is used for both; CLIP Text Encode SDXL / "
        "SDXL Refiner can replace them for size and aesthetic-score conditioning.", (440, 300)))
    return {"nodes": n, "links": l}


def flow_model_sd3():
    """Flow model (SD3 / Flux style)."""
    n = base_nodes("a glass sphere filled with glowing blue liquid on a grassy field, detailed photo",
                   ckpt="sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors", neg="")
    n += [N("msd3", "ModelSamplingSD3", [360, 480], [300, 60], shift=3.0),
          N("mask", "LoadImageMask", [360, 600], [320, 340], title="Load mask of the region (white)", image=MASK,
            channel="red"),
          N("map", "DDE_MaskDistanceFalloff", [800, 0], None, inner=0.0, outer=24.0, threshold=0.5,
            curve="smoothstep", gamma=1.0, invert=False),
          dks("ks", [1180, 0], mode="denoise", steps=28, cfg=4.5, scheduler="simple")]
    l = base_links() + [["ckpt", "MODEL", "msd3", "model"], ["mask", "MASK", "map", "mask"]] + sampler_links("ks", model="msd3")
    t = tail("ks", "map", 0, 1560, "differential_edit/flow_model")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "Flow models (SD3 / SD3.5, Flux): Differential KSampler with mode = denoise.\n\n"
        "In denoise mode a map value g starts where KSampler with denoise = g would start, so grey means the same "
        "strength on shifted flow schedules as on SD1.5 ('timestep' mode frees far fewer steps there).\n"
        "The change map is a hard mask (white = region) with a soft falloff of 'outer' pixels around it "
        "(24 px here: scale it with your picture).\n\n"
        "Flux: replace Load Checkpoint with Load Diffusion Model (UNETLoader) + DualCLIPLoader (type flux) + "
        "Load VAE, ModelSamplingSD3 with ModelSamplingFlux, put FluxGuidance on the positive prompt and set "
        "cfg to 1.", (440, 320)))
    return {"nodes": n, "links": l}


def edit_change_map():
    """Keep everything a mask-free editor did not mean to change."""
    n = base_nodes("a shiny golden ball on a grassy field, detailed photo")
    n += [N("after", "LoadImage", [0, 540], [320, 340], title="Load the editor's output (after)", image=EDITED),
          N("cm", "DDE_ChangeMapFromEdit", [800, 0], [320, 560], color_match="affine", noise_floor=6.0, full_change=15.0,
            grow=2, softness=4, align="similarity"),
          N("keep", "DDE_CompositeByChangeMap", [800, 620], [300, 260], title="Keep the rest pixel-exact", blend="map",
            feather=0, invert=False, difference_threshold=0.0, difference_contrast=2.0, mask_influence=0.0),
          dks("ks", [1180, 0], steps=20, denoise=0.4, softness=0.2, title="Blend the seam (Differential KSampler)")]
    l = [["ckpt", "CLIP", "pos", "clip"], ["ckpt", "CLIP", "neg", "clip"], ["ckpt", "VAE", "enc", "vae"],
         ["img", "IMAGE", "cm", "before"], ["after", "IMAGE", "cm", "after"],
         ["img", "IMAGE", "keep", "original"], ["after", "IMAGE", "keep", "edited"], ["cm", 0, "keep", "change_map"],
         ["keep", "IMAGE", "enc", "pixels"]] + sampler_links("ks", change_map=("cm", 0))
    t = tail("ks", "cm", 0, 1560, "differential_edit/edit_change_map")
    t[0][1]["widgets"].update(difference_threshold=0.05)
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 920], "Keep everything an instruction editor (FLUX Kontext, Qwen-Image-Edit, "
        "InstructPix2Pix, any img2img) did not mean to change.\n\n"
        "1. Load the picture before the edit and the editor's output.\n"
        "2. Change Map from Edit matches the editor's global colour shift, then marks what changed (CIELAB "
        "difference between noise_floor and full_change), grown by 'grow' and softened by 'softness' pixels.\n"
        "3. 'Keep the rest pixel-exact' takes the edit only inside the map.\n"
        "4. The Differential KSampler re-samples the edited region lightly (denoise 0.4) to blend the seam; the last "
        "composite puts the original back outside the map, and with difference_threshold 0.05 snaps pixels the "
        "re-sampling barely changed back to the original too (A1111 soft inpainting).\n\n"
        "Without a checkpoint: connect 'Keep the rest pixel-exact' straight to Save Image.", (440, 300)))
    return {"nodes": n, "links": l}


def few_step_fractional():
    """Continuous strength on a few-step model."""
    n = base_nodes("a sunset sky in warm orange light over a grassy field, detailed photo")
    n += [N("map", "DDE_LinearGradientMap", [800, 0], [320, 560], width=512, height=512, batch_size=1, angle=0.0,
            offset=0.25, curve="linear", gamma=1.0, invert=False),
          dks("ks", [1180, 0], steps=4, cfg=1.0, scheduler="sgm_uniform", fractional=True,
              title="Differential KSampler (4 steps, fractional)")]
    l = base_links() + [["img", "IMAGE", "map", "reference"]] + sampler_links("ks")
    t = tail("ks", "map", 0, 1560, "differential_edit/few_step_fractional")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "Continuous strength on few-step models (SDXL Lightning / Turbo, LCM, FLUX schnell).\n\n"
        "With N steps a change map has only N shades: a value between two step boundaries rounds down, so a "
        "gradient turns into N bands. 'fractional' gives such a value its fraction: the step before its start "
        "step blends the freed and the kept latent by how far the value lies between the two boundaries, and "
        "4 steps render a smooth gradient. At exact boundaries the result is the same as without; map 0 stays "
        "pixel-exact.\n\n"
        "Pick a few-step checkpoint and its sampler settings (here euler / sgm_uniform, 4 steps, cfg 1).", (440, 260)))
    return {"nodes": n, "links": l}


def several_edits():
    """Several edits in one pass: Edit Concept x 2 -> DiffEdit Masks (several edits) -> Differential KSampler."""
    n = [N("ckpt", "CheckpointLoaderSimple", [0, 0], [320, 100], ckpt_name=SD15),
         N("img", "LoadImage", [0, 160], [320, 340], title="Load picture to edit", image=SCENE),
         N("ref", "CLIPTextEncode", [360, 0], [400, 110], title="Reference prompt (what the picture shows)",
           text="a red ball on a grassy field under a blue sky"),
         N("e1", "CLIPTextEncode", [360, 150], [400, 110], title="Edit 1 prompt", text=QUERY),
         N("e2", "CLIPTextEncode", [360, 300], [400, 110], title="Edit 2 prompt",
           text="a red ball on a grassy field under a golden sunset sky"),
         N("neg", "CLIPTextEncode", [360, 450], [400, 110], title="Negative prompt", text=NEG),
         N("enc", "VAEEncode", [360, 600], [200, 50]),
         N("c1", "DDE_EditConcept", [800, 0], None, title="Edit Concept 1", strength=1.0),
         N("c2", "DDE_EditConcept", [800, 160], None, title="Edit Concept 2", strength=0.8),
         N("masks", "DDE_DiffEditMasks", [800, 340], None, strength=0.5, n=10, seed=0, **{"seed:control": "fixed"},
           cfg=1.0, threshold_method="rescale", threshold=0.5, clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0,
           batch_size=0),
         dks("ks", [1180, 0]),
         N("pv", "PreviewImage", [1180, 560], [320, 320], title="Each edit's region")]
    l = [["ckpt", "CLIP", "ref", "clip"], ["ckpt", "CLIP", "e1", "clip"], ["ckpt", "CLIP", "e2", "clip"],
         ["ckpt", "CLIP", "neg", "clip"], ["img", "IMAGE", "enc", "pixels"], ["ckpt", "VAE", "enc", "vae"],
         ["e1", 0, "c1", "query"], ["ref", 0, "c1", "reference"],
         ["e2", 0, "c2", "query"], ["ref", 0, "c2", "reference"], ["c1", 0, "c2", "previous"],
         ["ckpt", "MODEL", "masks", "model"], ["c2", 0, "masks", "concepts"], ["enc", 0, "masks", "latent"],
         ["img", "IMAGE", "masks", "image"], ["masks", "preview", "pv", "images"]]
    l += sampler_links("ks", pos="masks", change_map=("masks", "change_map"))
    t = tail("ks", "masks", "change_map", 1560, "differential_edit/several_edits")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 540], "Several edits in one pass (what LEDITS++ does): each edit gets its own "
        "automatic mask and its own prompt inside it.\n\n"
        "1. Pick your checkpoint and load your picture; describe the picture in the reference prompt.\n"
        "2. One Edit Concept per edit: its prompt (query), the reference, and a strength (1 = change fully). "
        "Chain more Edit Concepts through 'previous' for more edits.\n"
        "3. DiffEdit Masks (several edits) finds every edit's region from one set of model calls (the same noise "
        "for all), gives pixels two masks share to the edit with the larger heat, and makes the positive "
        "conditioning (each prompt inside its own region, the reference elsewhere) and the change map.\n"
        "4. One Differential KSampler pass makes every edit; everything outside the regions stays, and the "
        "composite puts those pixels back exactly. The preview shows each edit's region in its own colour.",
        (440, 320)))
    return {"nodes": n, "links": l}


def region_locked_edit():
    """An instruction editor locked to a region: its own DiffEdit heat as change map of a Differential KSampler."""
    n = [N("ckpt", "CheckpointLoaderSimple", [0, 0], [320, 100], title="Load Checkpoint (the editor)", ckpt_name=SD15),
         N("img", "LoadImage", [0, 160], [320, 340], title="Load picture to edit", image=SCENE),
         N("pos", "CLIPTextEncode", [360, 0], [400, 130], title="Instruction", text="make the ball blue"),
         N("empty", "CLIPTextEncode", [360, 180], [400, 100], title="Empty instruction (keep everything)", text=""),
         N("enc", "VAEEncode", [360, 330], [200, 50]),
         N("rpos", "ReferenceLatent", [360, 430], [260, 50], title="ReferenceLatent (instruction)"),
         N("rneg", "ReferenceLatent", [360, 520], [260, 50], title="ReferenceLatent (empty)"),
         N("mask", "DDE_DiffEditMask", [800, 0], None, title="Where the instruction acts (DiffEdit Mask)",
           strength=0.5, n=10, seed=0, **{"seed:control": "fixed"}, cfg=1.0, threshold_method="rescale",
           threshold=0.5, clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0, batch_size=0),
         dks("ks", [1180, 0], steps=20, cfg=2.5, title="Differential KSampler (the edit, locked)"),
         N("pv", "PreviewImage", [800, 640], [320, 320], title="The instruction's heat over the picture")]
    l = [["ckpt", "CLIP", "pos", "clip"], ["ckpt", "CLIP", "empty", "clip"], ["img", "IMAGE", "enc", "pixels"],
         ["ckpt", "VAE", "enc", "vae"], ["pos", 0, "rpos", "conditioning"], ["enc", 0, "rpos", "latent"],
         ["empty", 0, "rneg", "conditioning"], ["enc", 0, "rneg", "latent"],
         ["ckpt", "MODEL", "mask", "model"], ["rpos", 0, "mask", "query"], ["enc", 0, "mask", "latent"],
         ["rneg", 0, "mask", "reference"], ["img", "IMAGE", "mask", "image"], ["mask", "preview", "pv", "images"]]
    l += sampler_links("ks", pos="rpos", neg="rneg", change_map=("mask", "heat"))
    t = tail("ks", "mask", "heat", 1560, "differential_edit/region_locked_edit")
    n += t[0]
    l += t[1]
    n.append(note("note", [0, 560], "Region-locked instruction edit: an instruction editor (FLUX.1 Kontext, "
        "Qwen-Image-Edit) changes only where its instruction acts; everything else comes back pixel-exact.\n\n"
        "1. Swap in the editor: Kontext: Load Diffusion Model + DualCLIPLoader (flux) + Load VAE, FluxGuidance "
        "on the instruction, cfg 1; Qwen-Image-Edit: its loaders, and TextEncodeQwenImageEdit may replace "
        "each CLIP Text Encode + ReferenceLatent pair. The tiny test checkpoint here is SD1.5, which simply ignores ReferenceLatent, "
        "so the graph runs as it is.\n"
        "2. Load your picture and write the instruction. ReferenceLatent puts the picture on both the instruction "
        "and the empty instruction, as the editor expects.\n"
        "3. DiffEdit Mask compares the editor's predictions for the instruction and for the empty instruction: its "
        "heat (or, for a hard edge, its mask) is where the instruction acts. Or paint a mask instead.\n"
        "4. The Differential KSampler edits with that change map: map 0 stays exact, map 1 is the editor's own "
        "result, grey blends; the composite puts the original pixels back where the map is 0.", (440, 330)))
    return {"nodes": n, "links": l}


WORKFLOWS = {f.__name__: f() for f in (
    soft_inpainting_gradient,
    diffedit_mask_edit,
    diffedit_semantic_differential,
    strength_fan,
    depth_change_map,
    sdxl_base_refiner_split,
    flow_model_sd3,
    edit_change_map,
    few_step_fractional,
    several_edits,
    region_locked_edit)}

THUMBNAIL = 512


def write_thumbnails():
    """``<title>.jpg`` next to each ``<title>.json``: the card picture of ComfyUI's template browser, made from
    the README picture ``previews/<name>.png`` fitted into a dark square."""
    from PIL import Image

    for name, title in TITLES.items():
        picture = Image.open(os.path.join(OUT, "previews", name + ".png")).convert("RGB")
        scale = THUMBNAIL / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
        card = Image.new("RGB", (THUMBNAIL, THUMBNAIL), (32, 32, 32))
        card.paste(picture, ((THUMBNAIL - picture.width) // 2, (THUMBNAIL - picture.height) // 2))
        card.save(os.path.join(OUT, title + ".jpg"), quality=88)


if __name__ == "__main__" and sys.argv[1:] == ["--thumbnails"]:
    write_thumbnails()
elif __name__ == "__main__":
    with ComfyServer(find_comfyui()) as server, B.open_frontend(server.url) as br:
        for name, spec in WORKFLOWS.items():
            if sys.argv[1:] and name not in sys.argv[1:]:   # build only the named ones
                continue
            wf = B.build_graph(br, spec)
            br.eval("() => { app.canvas.ds.scale = 0.75; app.canvas.ds.offset = [40, 40]; }")
            wf = B.frontend_prompt(br)["workflow"]   # what the frontend exports (with extra.frontendVersion)
            wf["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "differential-edit/workflows/" + name))  # graph.clear() zeroes it
            with open(os.path.join(OUT, TITLES[name] + ".json"), "w") as f:
                json.dump(wf, f, indent=2)
                f.write("\n")
            print(name, len(wf["nodes"]), len(wf["links"]))
        print(br.pack_errors())
