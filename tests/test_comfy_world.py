"""The test world itself: the analytic model samples to its exact target; the tiny files load."""

import pytest
import torch


@pytest.mark.parametrize("family", ["eps", "v", "flow"])
@pytest.mark.parametrize("sampler,scheduler", [("euler", "normal"), ("dpmpp_2m", "karras"), ("heun", "simple")])
def test_plain_ksampler_reaches_the_exact_target(comfy, cw, world, family, sampler, scheduler):
    model = cw.make_model(world, family)
    target = world.latent(1, "sharp")
    empty = {"samples": torch.zeros_like(target)}
    (out,) = comfy.nodes.KSampler().sample(model, 7, 12, 1.0, sampler, scheduler, cw.conditioning(world, world.sharp_id(1)),
                                           cw.conditioning(world, None), empty)
    assert (out["samples"] - target).abs().max().item() < 1e-4
    assert len(cw.net_of(model).calls) > 0


def test_posterior_mean_is_exact_for_a_single_gaussian(world):
    from dde_world.analytic import AnalyticWorld

    w = AnalyticWorld()
    mu = torch.randn(4, 8, 8)
    cid = w.add_condition([(mu, 0.5, 1.0)])
    x = torch.randn(1, 4, 8, 8) * 3
    got = w.posterior_mean(x, torch.tensor([2.0]), [cid], "eps")
    expect = mu + 0.25 / (0.25 + 4.0) * (x[0] - mu)
    assert torch.allclose(got[0], expect, atol=1e-5)
    got_flow = w.posterior_mean(x, torch.tensor([0.6]), [cid], "flow")
    a, b = 0.4, 0.6
    expect_flow = mu + a * 0.25 / (a * a * 0.25 + b * b) * (x[0] - a * mu)
    assert torch.allclose(got_flow[0], expect_flow, atol=1e-5)


def test_tiny_checkpoint_loads_through_the_standard_loaders(comfy, tiny_models):
    nodes = comfy.nodes
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_models["checkpoint"])
    assert type(model.model).__name__ == "BaseModel"
    assert model.model.diffusion_model.model_channels == 320
    assert 15e6 < sum(p.numel() for p in model.model.diffusion_model.parameters()) < 30e6
    (unet,) = nodes.UNETLoader().load_unet(tiny_models["unet"], "default")
    (vae2,) = nodes.VAELoader().load_vae(tiny_models["vae"])
    assert type(vae.first_stage_model).__name__ == "TAESD" == type(vae2.first_stage_model).__name__
    (cond,) = nodes.CLIPTextEncode().encode(clip, "a red disk")
    assert cond[0][0].shape == (1, 77, 768) and torch.isfinite(cond[0][0]).all()
    (latent,) = nodes.EmptyLatentImage().generate(64, 64, 1)
    for m in (model, unet):
        (out,) = nodes.KSampler().sample(m, 0, 3, 5.0, "euler", "normal", cond, cond, latent)
        assert out["samples"].shape == (1, 4, 8, 8) and torch.isfinite(out["samples"]).all()
    (img,) = nodes.VAEDecode().decode(vae2, out)
    assert img.shape == (1, 64, 64, 3) and torch.isfinite(img).all()
