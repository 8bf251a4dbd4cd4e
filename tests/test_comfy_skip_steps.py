"""No wasted steps: leading steps in which no pixel is free are not sampled.

The unskipped reference is the same run with a pass-through ``denoise_mask_function`` installed
first (a chained function disables skipping, since it could free pixels the pack does not know of).
"""

import pytest
import torch

from dde_world.probes import level_map


def _unskipped(model):
    m = model.clone()
    m.set_model_denoise_mask_function(lambda sigma, mask, extra_options: mask)
    return m


def _calls(model):
    """A clone that counts model evaluations (ComfyUI's unet function wrapper)."""
    m = model.clone()
    calls = []

    def wrapper(apply_model, args):
        calls.append(float(args["timestep"].reshape(-1)[0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


@pytest.fixture(scope="module")
def dk(comfy):

    def run(model, latent, cmap, pos, neg, mode="step", steps=12, sampler="euler", scheduler="normal", seed=0, cfg=1.0,
            denoise=1.0, strength=1.0, softness=0.0):
        latent = latent if isinstance(latent, dict) else {"samples": latent}
        return comfy.run_node("DDE_DifferentialKSampler", model=model, seed=seed, steps=steps, cfg=cfg,
                              sampler_name=sampler, scheduler=scheduler, positive=pos, negative=neg,
                              latent_image=latent, denoise=denoise, change_map=cmap, mode=mode, invert=False,
                              strength=strength, softness=softness)[0]["samples"]

    return run


@pytest.fixture(scope="module")
def conds(cw, world):
    return {"graded": cw.conditioning(world, world.graded_id(0)), "uncond": cw.conditioning(world, None)}


@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2"])
@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_skipped_run_equals_unskipped_on_the_analytic_world(comfy, cw, world, dk, conds, family, sampler, mode):
    model = cw.make_model(world, family)
    cmap = level_map() * 0.45                       # largest value 0.45: about half the steps free no pixel
    latent = world.latent(0)
    counted, calls = _calls(model)
    skipped = dk(counted, latent, cmap, conds["graded"], conds["uncond"], mode=mode, sampler=sampler, steps=12)
    n_skipped = len(calls)
    calls.clear()
    full = dk(_unskipped(counted), latent, cmap, conds["graded"], conds["uncond"], mode=mode, sampler=sampler, steps=12)
    assert n_skipped < len(calls), "no step was skipped"
    assert (skipped - full).abs().max().item() <= 1e-5
    assert torch.equal(skipped[..., ::11], latent[..., ::11])      # map-0 columns: bit-exact
    assert (skipped - latent).abs().max() > 0.01                   # the edit did something


def test_skipped_steps_are_exactly_the_steps_that_free_no_pixel(comfy, cw, world, dk, conds):
    """euler, step mode, max 0.45 at 12 steps: k = ceil(12 * 0.55) = 7, so 5 model calls instead of 12."""
    model, calls = _calls(cw.make_model(world, "eps"))
    dk(model, world.latent(0), level_map() * 0.45, conds["graded"], conds["uncond"], steps=12)
    assert len(calls) == 5
    import comfy.samplers as cs

    sig = cs.KSampler(model, 12, "cpu", "euler", "normal", 1.0).sigmas
    assert calls == pytest.approx([float(s) for s in sig[7:12]], rel=1e-6)


def test_map_one_somewhere_skips_nothing_and_equals_ksampler(comfy, cw, world, dk, conds):
    import nodes

    model, calls = _calls(cw.make_model(world, "eps"))
    latent = {"samples": world.latent(0)}
    ones = torch.ones(1, 256, 256)
    ours = dk(model, latent, ones, conds["graded"], conds["uncond"], steps=8, seed=3)
    assert len(calls) == 8
    ref = nodes.KSampler().sample(model, 3, 8, 1.0, "euler", "normal", conds["graded"], conds["uncond"], latent)[0]["samples"]
    assert torch.equal(ours, ref)


def test_multistep_and_ancestral_samplers_run_every_step(comfy, cw, world, dk, conds):
    for sampler in ("dpmpp_2m", "euler_ancestral", "lms", "uni_pc"):
        model, calls = _calls(cw.make_model(world, "eps"))
        dk(model, world.latent(0), level_map() * 0.45, conds["graded"], conds["uncond"], sampler=sampler, steps=6)
        assert len(calls) >= 6, sampler


def test_softness_and_strength_below_one_free_pixels_earlier(comfy, cw, world, dk, conds):
    latent = world.latent(0)
    cmap = level_map() * 0.45
    for kwargs in ({"softness": 0.3}, {"strength": 0.7}):
        model, calls = _calls(cw.make_model(world, "eps"))
        a = dk(model, latent, cmap, conds["graded"], conds["uncond"], steps=12, **kwargs)
        b = dk(_unskipped(model), latent, cmap, conds["graded"], conds["uncond"], steps=12, **kwargs)
        assert (a - b).abs().max().item() <= 1e-5, kwargs


def test_skipped_run_equals_unskipped_on_the_tiny_unet(comfy, tiny_models, dk):
    import nodes

    (model,) = nodes.UNETLoader().load_unet(tiny_models["unet"], "default")
    torch.manual_seed(0)
    cond = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    src = torch.randn(1, 4, 8, 8)
    cmap = torch.zeros(1, 64, 64)
    cmap[:, :, 32:] = 0.4
    cmap[:, 32:, :32] = 0.2
    for sampler in ("euler", "heun", "dpm_2"):
        counted, calls = _calls(model)
        a = dk(counted, src, cmap, cond, cond, sampler=sampler, steps=10, cfg=3.0, seed=1, mode="denoise")
        n = len(calls)
        calls.clear()
        b = dk(_unskipped(counted), src, cmap, cond, cond, sampler=sampler, steps=10, cfg=3.0, seed=1, mode="denoise")
        assert n < len(calls), sampler
        assert (a - b).abs().max().item() <= 1e-5, sampler
        assert torch.equal(a[..., :4, :4], src[..., :4, :4])


def test_strength_fan_skips_only_to_the_batch_earliest_free_step(comfy, cw, world, conds):
    plan = comfy.module("nodes.plan")
    body = comfy.module("nodes.differential_sampling")
    model, calls = _calls(cw.make_model(world, "eps"))
    latent = world.latent(0).repeat(3, 1, 1, 1)
    maps = torch.tensor([0.1, 0.3, 0.45]).view(3, 1, 1)

    def run(m, samples, values):
        key = plan.PlanKey.for_ksampler(m, samples.shape, 12, "euler", "normal")
        batch = {"samples": samples, "batch_index": [0] * samples.shape[0]}
        return body.differential_sample(m, 5, 1.0, conds["graded"], conds["uncond"], batch,
                                        plan.ChangeMap(maps=values, mode="step"), key)["samples"]

    a = run(model, latent, maps)
    assert len(calls) == 5          # the 0.45 panel frees pixels from step 7 on
    b = run(_unskipped(model), latent, maps)
    assert (a - b).abs().max().item() <= 1e-5
    for i in range(3):
        single = run(model, latent[i:i + 1], maps[i:i + 1])
        assert (single - a[i:i + 1]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_split_sampling_with_skipping_equals_one_unskipped_pass(comfy, cw, world, conds, sampler):
    model = cw.make_model(world, "eps")
    latent = {"samples": world.latent(0)}
    cmap = level_map() * 0.6

    def run(m, lat, add_noise, start, end, leftover):
        return comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=m, add_noise=add_noise, noise_seed=7, steps=12,
                              cfg=1.0, sampler_name=sampler, scheduler="normal", positive=conds["graded"],
                              negative=conds["uncond"], latent_image=lat, start_at_step=start, end_at_step=end,
                              return_with_leftover_noise=leftover, change_map=cmap, mode="step", invert=False,
                              strength=1.0, softness=0.0)[0]

    one = run(_unskipped(model), latent, "enable", 0, 10000, "disable")
    for cut in (3, 8):   # the cut before and after the first free step (ceil(12 * 0.4) = 5)
        first = run(model, latent, "enable", 0, cut, "enable")
        second = run(model, first, "disable", cut, 10000, "disable")
        assert (second["samples"] - one["samples"]).abs().max().item() <= 1e-5, cut


def _scalar_reads(fn) -> int:
    """How many tensor -> Python scalar reads (``.item()``, ``float(t)``, ``bool(t)``: a sync on a GPU) ``fn`` makes."""
    from dde_world.probes import host_reads

    return len(host_reads(fn)[1])


@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_the_pack_adds_no_scalar_read_per_step(comfy, cw, world, dk, conds, mode):
    """Reads the pack adds to KSampler's own are per run (planning on the CPU copy), never per step."""
    import nodes

    model = cw.make_model(world, "eps")
    latent = {"samples": world.latent(0)}
    cmap = level_map()
    extra = {}
    for steps in (4, 8):
        ours = _scalar_reads(lambda: dk(model, latent, cmap, conds["graded"], conds["uncond"], mode=mode, steps=steps))
        ks = _scalar_reads(lambda: nodes.KSampler().sample(model, 0, steps, 1.0, "euler", "normal", conds["graded"],
                                                           conds["uncond"], latent))
        extra[steps] = ours - ks
    assert extra[4] == extra[8], extra
