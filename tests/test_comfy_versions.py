"""What the running ComfyUI's own KSampler does, the pack does too, on every supported version.

* Empty latents: ComfyUI 0.3x's ``EmptyLatentImage`` marks its latent with the VAE's downscale ratio and
  KSampler resizes it to the model's own ratio (a 16x or 32x model samples a smaller grid) and drops the
  marks from its output. The Differential KSampler, the Strength Fan, the Schedule Preview and DiffEdit
  see the same latent and return the same keys.
* Per-step tensors follow the tensor they meet (a model spread over several devices): the step mask the
  wrappers build is on the device of ``x`` / the denoise mask, checked here with a second device that
  exists on every machine (``meta``).
* Search words (``search_aliases``) where the running ComfyUI's Schema has the field.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dde_world import families as F

#: a 16x (Wan 2.2 5B) and a 32x (LTXV) family; EmptyLatentImage makes 8x latents
RATIO_FAMILIES = ("wan22", "ltxv")


@pytest.fixture(scope="module")
def glue(comfy):
    return comfy.module("nodes.comfy_glue")


def _empty_latent(comfy, size=128):
    return comfy.node("EmptyLatentImage")().generate(size, size, 1)[0]


@pytest.mark.parametrize("name", RATIO_FAMILIES)
def test_empty_latent_is_sampled_as_ksampler_samples_it(comfy, glue, name):
    import nodes

    f = F.build(name)
    latent = _empty_latent(comfy)
    ref = nodes.KSampler().sample(f.model, 3, 2, 2.0, "euler", "normal", f.positive, f.negative, latent)[0]
    if glue.CONSUMED_KEYS:   # this ComfyUI resizes empty latents: the case is real (the grid is not 128/8)
        assert "downscale_ratio_spacial" in latent
        ratio = f.model.get_model_object("latent_format").spacial_downscale_ratio
        assert tuple(ref["samples"].shape[-2:]) == (128 // ratio, 128 // ratio)
    cmap = torch.ones(1, 128, 128)
    out = comfy.run_node("DDE_DifferentialKSampler", model=f.model, seed=3, steps=2, cfg=2.0, sampler_name="euler",
                         scheduler="normal", positive=f.positive, negative=f.negative, latent_image=latent,
                         denoise=1.0, change_map=cmap)[0]
    assert sorted(out) == sorted(ref), "the output LATENT has other keys than KSampler's"
    assert out["samples"].shape == ref["samples"].shape
    assert torch.equal(out["samples"], ref["samples"]), f"map 1 differs from KSampler by {(out['samples'] - ref['samples']).abs().max():.3g}"
    adv = comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=f.model, add_noise="enable", noise_seed=3, steps=2,
                         cfg=2.0, sampler_name="euler", scheduler="normal", positive=f.positive, negative=f.negative,
                         latent_image=latent, start_at_step=0, end_at_step=10000, return_with_leftover_noise="disable",
                         change_map=cmap)[0]
    assert sorted(adv) == sorted(ref) and torch.equal(adv["samples"], ref["samples"])
    # the preview plans the grid the sampler sees
    preview = comfy.run_node("DDE_SchedulePreview", model=f.model, change_map=cmap, steps=2, latent_image=latent)
    assert tuple(preview[1].shape[-2:]) == tuple(ref["samples"].shape[-2:])


def test_strength_fan_samples_an_empty_latent_as_ksampler(comfy, glue):
    import nodes

    f = F.build("wan22")
    latent = _empty_latent(comfy, 64)
    ref = nodes.KSampler().sample(f.model, 3, 2, 2.0, "euler", "normal", f.positive, f.negative, latent)[0]["samples"]
    vae = F.vae("wan22")
    out = comfy.run_node("DDE_StrengthFan", model=f.model, seed=3, steps=2, cfg=2.0, sampler_name="euler",
                         scheduler="normal", positive=f.positive, negative=f.negative, latent_image=latent, vae=vae,
                         strengths="1")
    latents = out[2]
    assert not any(k in latents for k in glue.CONSUMED_KEYS)
    assert torch.equal(latents["samples"], ref)


# -- per-step tensors on the device of the tensor they meet ---------------------------------------

def _run(comfy, device="cpu"):
    schedule = comfy.module("nodes.core.schedule")
    start = torch.tensor([0.0, 1.0, float("inf"), 0.0]).view(1, 1, 2, 2)
    return schedule.DifferentialRun(start=start.to(device), strength_map=torch.tensor([1.0, 0.5, 0.0, 1.0]).view(1, 1, 2, 2).to(device),
                                    sigmas=torch.tensor([2.0, 1.0, 0.0]).to(device), n_steps=2)


def test_run_on_a_device_is_copied_once_and_masks_the_same(comfy):
    run = _run(comfy)
    assert run.on("cpu") is run
    there = run.on("meta")
    assert there.start.device.type == "meta" and there.sigmas.device.type == "meta"
    assert run.on("meta") is there, "a second device's copy is made once per run"
    assert torch.equal(run.on("cpu").mask(torch.tensor([1.0])), torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2))


def test_wrappers_build_the_step_mask_on_the_device_of_what_they_meet(comfy):
    """x, t, the concat and the denoise mask on another device than the run's: every mask the model is told
    about is on that device (the old code mixed devices: 'Expected all tensors to be on the same device')."""
    hooks = comfy.module("nodes.hooks")
    run = _run(comfy, "cpu")
    x = torch.zeros(2, 4, 2, 2, device="meta")    # cfg: two rows per latent batch of one
    t = torch.full((2,), 1.0, device="meta")
    mask = hooks._step_mask_rows(run, x, t)
    assert mask.device.type == "meta" and tuple(mask.shape) == (2, 1, 2, 2)
    given = torch.zeros(2, 1, 2, 2, device="meta")
    assert hooks._step_denoise_mask(run, x, t, given).device.type == "meta"
    function = hooks._mask_function(run, None)
    assert function(torch.tensor([1.0], device="meta"), torch.zeros(1, 4, 2, 2, device="meta"), {}).device.type == "meta"


# -- search words ---------------------------------------------------------------------------------

MAIN_WORDS = {"DDE_DifferentialKSampler": "soft inpainting", "DDE_DiffEditMask": "auto mask",
              "DDE_ApplyChangeMap": "variable denoise", "DDE_ChangeMapFromEdit": "edit composite",
              "DDE_DiffEditMasks": "several edits", "DDE_EditConcept": "multiple edits"}


def test_main_nodes_carry_search_words_where_comfyui_has_them(comfy):
    import comfy_api.latest as latest

    has_field = "search_aliases" in {f.name for f in dataclasses.fields(latest.io.Schema)}
    for node_id, word in MAIN_WORDS.items():
        schema = comfy.node(node_id).GET_SCHEMA()
        if has_field:
            assert word in schema.search_aliases, node_id
            assert word in (schema.get_v1_info(comfy.node(node_id)).search_aliases or [])
        else:
            assert not hasattr(schema, "search_aliases")
