"""Strength Fan and schedule preview on real ComfyUI sampling."""

import pytest
import torch

from dde_world.probes import level_map, recording


@pytest.fixture(scope="module")
def vae(comfy, tiny_models):
    return comfy.nodes.VAELoader().load_vae(tiny_models["vae"])[0]


def test_fan_panels_at_0_and_1_are_the_input_and_plain_sampling(comfy, cw, world, vae):
    model = cw.make_model(world, "eps")
    pos, neg = cw.conditioning(world, world.graded_id(0)), cw.conditioning(world, None)
    src = world.latent(0)
    picture, panels, latents = comfy.run_node("DDE_StrengthFan", model=model, seed=9, steps=8, sampler_name="dpmpp_2m",
                                              scheduler="karras", cfg=2.0, positive=pos, negative=neg,
                                              latent_image={"samples": src}, vae=vae, strengths="0, 0.5, 1",
                                              mode="step", layout="grid", columns=0)
    lat = latents["samples"]
    calls = list(cw.net_of(model).calls)
    assert set(calls) == {3 * 2}                                              # one batched call per step (cond+uncond)
    assert lat.shape == (3, 4, 32, 32) and panels.shape == (3, 256, 256, 3)
    assert torch.equal(lat[0:1], src)                                          # strength 0: the input
    (plain,) = comfy.nodes.KSampler().sample(model, 9, 8, 2.0, "dpmpp_2m", "karras", pos, neg, {"samples": src})
    assert torch.equal(lat[2:3], plain["samples"])                            # strength 1: plain sampling
    assert torch.allclose(panels[0], vae.decode(src)[0], atol=1e-5)
    assert (lat[1] - src[0]).abs().mean() > 0.01 and (lat[1] - lat[2]).abs().mean() > 0.01   # in between
    assert picture.shape[0] == 1 and picture.shape[1] > 256 and picture.shape[2] > 256


def test_fan_layout_is_one_picture_with_sectors(comfy, cw, world, vae):
    model = cw.make_model(world, "flow")
    pos, neg = cw.conditioning(world, world.graded_id(1)), cw.conditioning(world, None)
    picture, panels, _ = comfy.run_node("DDE_StrengthFan", model=model, seed=0, steps=6, sampler_name="euler",
                                        scheduler="simple", cfg=1.0, positive=pos, negative=neg,
                                        latent_image={"samples": world.latent(1)}, vae=vae, strengths="0 1",
                                        mode="denoise", layout="fan", columns=0)
    assert picture.shape == (1, 256, 256, 3)
    # bottom-left corner comes from the strength-0 panel, bottom-right from strength 1
    q = 1 / 255   # labels are drawn in 8-bit
    left, right = (slice(-8, None), slice(0, 40)), (slice(-8, None), slice(-40, None))
    assert torch.allclose(picture[0][left], panels[0][left], atol=q) and torch.allclose(picture[0][right], panels[1][right], atol=q)
    assert not torch.allclose(panels[0], panels[1], atol=q)


def test_fan_rejects_bad_strengths_and_batches(comfy, cw, world, vae):
    model = cw.make_model(world, "eps")
    c = cw.conditioning(world, 0)
    with pytest.raises(ValueError, match="Strength Fan: input 'strengths'"):
        comfy.run_node("DDE_StrengthFan", model=model, seed=0, steps=4, sampler_name="euler", scheduler="normal",
                       cfg=1.0, positive=c, negative=c, latent_image={"samples": world.latent(0)}, vae=vae,
                       strengths="0, 2", mode="step", layout="grid", columns=0)
    with pytest.raises(ValueError, match="Strength Fan: input 'latent_image'"):
        comfy.run_node("DDE_StrengthFan", model=model, seed=0, steps=4, sampler_name="euler", scheduler="normal",
                       cfg=1.0, positive=c, negative=c, latent_image={"samples": world.latent(0).repeat(2, 1, 1, 1)},
                       vae=vae, strengths="0, 1", mode="step", layout="grid", columns=0)


@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_preview_agrees_with_the_samplers_per_step_masks(comfy, cw, world, family, mode):
    import comfy.samplers as cs

    model = cw.make_model(world, family)
    cmap = level_map()
    picture, effective, start = comfy.run_node("DDE_SchedulePreview", model=model, change_map=cmap, steps=10,
                                               sampler_name="heun", scheduler="karras", denoise=1.0, mode=mode,
                                               invert=False)
    assert effective.shape == start.shape == (1, 32, 32)
    assert picture.shape == (1, 32 + 256 + 48, 2 * 256 + 4, 3)   # header, 32 x 8 px panels, colour legend
    rec_model, rec = recording(model)
    comfy.run_node("DDE_DifferentialKSampler", model=rec_model, seed=0, steps=10, cfg=1.0, sampler_name="heun",
                   scheduler="karras", positive=cw.conditioning(world, world.graded_id(0)),
                   negative=cw.conditioning(world, None), latent_image={"samples": world.latent(0)}, denoise=1.0,
                   change_map=cmap, mode=mode, invert=False, strength=1.0, softness=0.0)
    sig = cs.KSampler(model, 10, "cpu", "heun", "karras", 1.0).sigmas
    first = torch.full((32, 32), 10.0)
    for sigma, mask in rec:
        i = int((sig[:-1] >= float(sigma[0]) * (1 - 1e-5)).sum()) - 1
        newly = (mask[0, 0] == 1.0) & (first == 10.0)
        first[newly] = float(i)
    assert torch.equal(first, start[0] * 10)
    assert torch.allclose(effective[0], (10 - first) / 10)
