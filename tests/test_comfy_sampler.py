"""Differential KSampler, Advanced split, model patch: exact behaviour on real ComfyUI sampling.

The analytic world gives the right answers (eps, v and rectified-flow families); the tiny
random UNet checks every sampler x scheduler runs.
"""


import pytest
import torch

from dde_world.probes import LEVELS, columns, level_map, recording, spearman


@pytest.fixture(scope="module")
def dk(comfy):
    def run(model, latent, cmap, pos, neg, mode="step", steps=12, sampler="euler", scheduler="normal", seed=0, cfg=1.0,
            denoise=1.0, invert=False, strength=1.0, softness=0.0, full=False):
        latent = latent if isinstance(latent, dict) else {"samples": latent}
        out = comfy.run_node("DDE_DifferentialKSampler", model=model, seed=seed, steps=steps, cfg=cfg,
                             sampler_name=sampler, scheduler=scheduler, positive=pos, negative=neg, latent_image=latent,
                             denoise=denoise, change_map=cmap, mode=mode, invert=invert, strength=strength,
                             softness=softness)[0]
        return out if full else out["samples"]

    return run


@pytest.fixture(scope="module")
def conds(cw, world):
    return {
        "graded": cw.conditioning(world, world.graded_id(0)),
        "sharp": cw.conditioning(world, world.sharp_id(0)),
        "query": cw.conditioning(world, world.query_id(0)),
        "uncond": cw.conditioning(world, None),
    }


# -- denoise mode starts exactly where KSampler(denoise=g) starts --------------------------------

@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2"])
@pytest.mark.parametrize("scheduler", ["normal", "karras", "simple"])
def test_denoise_mode_starts_at_ksamplers_first_level(comfy, cw, world, dk, conds, family, sampler, scheduler):
    import comfy.samplers as cs

    steps = 10
    model, rec = recording(cw.make_model(world, family))
    dk(model, world.latent(0), level_map(), conds["graded"], conds["uncond"], mode="denoise", steps=steps,
       sampler=sampler, scheduler=scheduler)
    sig = cs.KSampler(model, steps, "cpu", sampler, scheduler, 1.0).sigmas
    assert rec, "the recording mask function was never called"
    for level in LEVELS:
        g = float(torch.tensor(level, dtype=torch.float32))
        if g == 0:
            expected = None
        else:
            first_level = float(cs.KSampler(model, steps, "cpu", sampler, scheduler, g).sigmas[0])
            expected = next((i for i in range(len(sig) - 1) if float(sig[i]) <= first_level * (1 + 1e-5)), None)
        col = columns(level)[0]
        started = None
        for sigma, mask in rec:
            i = int((sig[:-1] >= float(sigma[0]) * (1 - 1e-5)).sum()) - 1
            value = float(mask[0, 0, 0, col])
            assert value in (0.0, 1.0)
            if value == 1.0 and started is None:
                started = i
            if started is not None:
                assert value == 1.0, "a freed pixel must stay free"
        assert started == expected, f"g={level}: started at {started}, KSampler(denoise=g) starts at step {expected}"


# -- exactness at 0 and 1 -------------------------------------------------------------------------

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde", "uni_pc", "ddim", "lcm"]


@pytest.mark.parametrize("family", ["eps", "v", "flow"])
@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_map_zero_is_bit_exact_and_map_one_is_ksampler(comfy, cw, world, dk, conds, family, mode):
    import nodes

    model = cw.make_model(world, family)
    src = world.latent(0)
    for sampler in SAMPLERS:
        zero = dk(model, src, torch.zeros(1, 256, 256), conds["graded"], conds["uncond"], mode=mode, sampler=sampler,
                  scheduler="karras", steps=8, seed=5)
        assert torch.equal(zero, src), f"{sampler}: map 0 changed the latent"
        one = dk(model, src, torch.ones(1, 256, 256), conds["graded"], conds["uncond"], mode=mode, sampler=sampler,
                 scheduler="karras", steps=8, seed=5, cfg=2.0)
        (ref,) = nodes.KSampler().sample(model, 5, 8, 2.0, sampler, "karras", conds["graded"], conds["uncond"], {"samples": src})
        assert torch.equal(one, ref["samples"]), f"{sampler}: map 1 differs from KSampler"


def test_half_map_keeps_the_zero_half_bit_exact_and_changes_the_other(comfy, cw, world, dk, conds):
    model = cw.make_model(world, "eps")
    src = world.latent(0)
    cmap = torch.zeros(1, 256, 256)
    cmap[:, :, 128:] = 1.0
    out = dk(model, src, cmap, conds["sharp"], conds["uncond"], steps=10)
    assert torch.equal(out[..., :16], src[..., :16])
    target = world.latent(0, "sharp")
    assert (out[..., 16:] - target[..., 16:]).abs().max() < 1e-3   # the sharp condition's target


# -- split sampling --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("sampler,mode", [("euler", "step"), ("heun", "denoise"), ("euler", "timestep")])
def test_split_advanced_equals_one_pass(comfy, cw, world, conds, family, sampler, mode):
    model = cw.make_model(world, family)
    latent = {"samples": world.latent(0)}
    cmap = level_map()

    def run(lat, add_noise, start, end, leftover):
        return comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=model, add_noise=add_noise, noise_seed=7,
                              steps=12, cfg=1.0, sampler_name=sampler, scheduler="normal", positive=conds["graded"],
                              negative=conds["uncond"], latent_image=lat, start_at_step=start, end_at_step=end,
                              return_with_leftover_noise=leftover, change_map=cmap, mode=mode, invert=False,
                              strength=1.0, softness=0.0)[0]

    one = run(latent, "enable", 0, 10000, "disable")
    first = run(latent, "enable", 0, 5, "enable")
    assert "dde_carry" in first
    second = run(first, "disable", 5, 10000, "disable")
    assert "dde_carry" not in second
    assert (second["samples"] - one["samples"]).abs().max().item() <= 1e-5
    changed = (one["samples"] - latent["samples"]).abs().amax(dim=(0, 1, 2))
    assert changed.max() > 0.05   # the edit did something


def test_start_at_or_after_end_returns_the_input(comfy, cw, world, conds):
    model = cw.make_model(world, "eps")
    latent = {"samples": world.latent(0)}
    out = comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=model, add_noise="enable", noise_seed=0, steps=10,
                         cfg=1.0, sampler_name="euler", scheduler="normal", positive=conds["graded"],
                         negative=conds["uncond"], latent_image=latent, start_at_step=6, end_at_step=6,
                         return_with_leftover_noise="disable", change_map=level_map(), mode="step", invert=False,
                         strength=1.0, softness=0.0)[0]
    assert torch.equal(out["samples"], latent["samples"])


# -- batches ---------------------------------------------------------------------------------------

def test_batch_of_three_maps_equals_three_separate_runs(comfy, cw, world, dk, conds):
    model = cw.make_model(world, "eps")
    src = world.latent(0).repeat(3, 1, 1, 1)
    maps = torch.stack([level_map()[0], 1.0 - level_map()[0], torch.full((256, 256), 0.5)])
    batch = dk(model, src, maps, conds["graded"], conds["uncond"], sampler="dpmpp_2m", seed=11)
    for i in range(3):
        single = dk(model, {"samples": src[i:i + 1], "batch_index": [i]}, maps[i:i + 1], conds["graded"], conds["uncond"],
                    sampler="dpmpp_2m", seed=11)
        assert (batch[i:i + 1] - single).abs().max().item() <= 1e-6
    assert (batch[0] - batch[1]).abs().max() > 0.05


# -- monotone adherence ----------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_realized_change_grows_with_the_map_value(comfy, cw, world, dk, conds, family, mode):
    model = cw.make_model(world, family)
    src = world.latent(0)
    out = dk(model, src, level_map(), conds["graded"], conds["uncond"], mode=mode, steps=20, seed=3)
    change = (out - src).abs().mean(dim=(0, 1, 2))
    per_level = [float(change[columns(level)].mean()) for level in LEVELS]
    rho = spearman(LEVELS, per_level)
    print(f"\n{family}/{mode}: change per level {[round(v, 3) for v in per_level]}  spearman {rho:.3f}")
    assert per_level[0] == 0.0
    assert rho >= 0.95


# -- the MODEL patch ---------------------------------------------------------------------------------

def test_patch_with_stock_samplers_equals_the_differential_ksampler(comfy, cw, world, dk, conds):
    import comfy.sample as csample
    import comfy.samplers as cs
    import nodes

    model = cw.make_model(world, "flow")
    src = world.latent(0)
    cmap = level_map()
    ours = dk(model, src, cmap, conds["graded"], conds["uncond"], steps=9, sampler="dpmpp_2m", scheduler="simple", seed=4)
    patched = comfy.run_node("DDE_ApplyChangeMap", model=model, change_map=cmap, mode="step", invert=False,
                             strength=1.0, softness=0.0, scheduler="normal")[0]
    assert patched is not model and model.model_options.get("denoise_mask_function") is None
    (stock,) = nodes.KSampler().sample(patched, 4, 9, 1.0, "dpmpp_2m", "simple", conds["graded"], conds["uncond"], {"samples": src})
    assert torch.equal(stock["samples"], ours)
    sigmas = cs.KSampler(model, 9, "cpu", "dpmpp_2m", "simple", 1.0).sigmas
    custom = csample.sample_custom(patched, csample.prepare_noise(src, 4), 1.0, cs.sampler_object("dpmpp_2m"),
                                        sigmas, conds["graded"], conds["uncond"], src, seed=4)
    assert torch.equal(custom, ours)


@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_the_node_plans_once_and_samples_what_the_patch_samples(comfy, cw, world, dk, conds, mode, monkeypatch):
    """The node's checks and its run share one plan, with a latent noise mask too (the node plans with the mask as
    ComfyUI hands it to the sampler). Either way the result is the Apply Change Map + KSampler result (which plans
    inside the sampler) bit for bit."""
    import nodes

    plan = comfy.module("nodes.plan")
    calls = []
    original = plan.start_steps
    monkeypatch.setattr(plan, "start_steps", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = cw.make_model(world, "eps")
    src = world.latent(0)
    cmap = level_map()
    half = torch.zeros(1, 32, 32)
    half[:, :, 16:] = 1.0
    for latent in ({"samples": src}, {"samples": src, "noise_mask": half}):
        calls.clear()
        ours = dk(model, latent, cmap, conds["graded"], conds["uncond"], mode=mode, steps=10)
        assert len(calls) == 1
        patched = comfy.run_node("DDE_ApplyChangeMap", model=model, change_map=cmap, mode=mode, invert=False,
                                 strength=1.0, softness=0.0, scheduler="normal")[0]
        (stock,) = nodes.KSampler().sample(patched, 0, 10, 1.0, "euler", "normal", conds["graded"], conds["uncond"], latent)
        assert torch.equal(stock["samples"], ours)


def test_the_plan_is_made_for_the_latent_the_sampler_sees(comfy, monkeypatch):
    """An empty 4-channel latent on a 16-channel model (SD3), or a 4-D one on a video model (Wan): ComfyUI fixes
    the latent before sampling; the node plans for the fixed latent, once."""
    from dde_world import families as F

    plan = comfy.module("nodes.plan")
    calls = []
    original = plan.start_steps
    monkeypatch.setattr(plan, "start_steps", lambda *a, **k: calls.append(1) or original(*a, **k))
    cmap = level_map(8, 8, 8)
    for name in ("sd3", "wan21"):
        f = F.build(name)
        calls.clear()
        out = comfy.run_node("DDE_DifferentialKSampler", model=f.model, seed=0, steps=4, cfg=1.0, sampler_name="euler",
                             scheduler="normal", positive=f.positive, negative=f.negative,
                             latent_image={"samples": torch.zeros(1, 4, 8, 8)}, denoise=1.0, change_map=cmap, mode="step",
                             invert=False, strength=1.0, softness=0.0)[0]["samples"]
        assert tuple(out.shape) == tuple(F.latent_shape(name)) and len(calls) == 1, (name, out.shape, len(calls))


def test_a_scheduler_of_float64_levels_still_gives_ksamplers_result(comfy, cw, world, dk, conds):
    """The run samples ComfyUI's own schedule (its dtype too), not the plan's float32 copy of it."""
    import comfy.samplers as cs
    import nodes

    def float64_karras(model_sampling, steps):
        return cs.k_diffusion_sampling.get_sigmas_karras(steps, float(model_sampling.sigma_min),
                                                         float(model_sampling.sigma_max)).to(torch.float64)

    model = cw.make_model(world, "eps")
    src = world.latent(0)
    cs.SCHEDULER_HANDLERS["dde_test_float64"] = cs.SchedulerHandler(float64_karras)
    cs.SCHEDULER_NAMES.append("dde_test_float64")   # how an extension adds a scheduler (KSampler.SCHEDULERS is this list)
    try:
        assert cs.KSampler(model, 6, "cpu", "euler", "dde_test_float64", 1.0).sigmas.dtype == torch.float64
        ours = dk(model, src, torch.ones(1, 256, 256), conds["graded"], conds["uncond"], steps=6, scheduler="dde_test_float64")
        (ks,) = nodes.KSampler().sample(model, 0, 6, 1.0, "euler", "dde_test_float64", conds["graded"], conds["uncond"],
                                        {"samples": src})
    finally:
        del cs.SCHEDULER_HANDLERS["dde_test_float64"]
        cs.SCHEDULER_NAMES.remove("dde_test_float64")
    assert torch.equal(ours, ks["samples"])


@pytest.mark.parametrize("sampler", ["uni_pc", "uni_pc_bh2"])
def test_a_whole_run_with_uni_pc_returns_no_leftover_noise(comfy, cw, world, dk, conds, sampler):
    """uni_pc rewrites the schedule's final 0 in place while sampling; the node reads it before (the output used to
    carry a 'continue me' marker that a following Advanced node with add_noise disabled would act on)."""
    sampling = comfy.module("nodes.differential_sampling")
    out = dk(cw.make_model(world, "eps"), world.latent(0), level_map(), conds["graded"], conds["uncond"], steps=6,
             sampler=sampler, full=True)
    assert set(out) == {"samples"} and sampling.CARRY_KEY not in out


def test_patch_chains_an_existing_mask_function_and_both_act(comfy, cw, world, conds):
    import nodes

    model = cw.make_model(world, "eps")
    first = model.clone()

    def keep_left_half(sigma, mask, extra_options):
        out = mask.clone()
        out[..., :16] = 0.0
        return out

    first.set_model_denoise_mask_function(keep_left_half)
    patched = comfy.run_node("DDE_ApplyChangeMap", model=first, change_map=level_map(), mode="step", invert=False,
                             strength=1.0, softness=0.0, scheduler="normal")[0]
    assert first.model_options["denoise_mask_function"] is keep_left_half   # the input is untouched
    src = world.latent(0)
    (out,) = nodes.KSampler().sample(patched, 1, 12, 1.0, "euler", "normal", conds["graded"], conds["uncond"], {"samples": src})
    out = out["samples"]
    assert (out[..., :16] - src[..., :16]).abs().max() < 1e-4          # the first function kept the left half
    change = (out - src).abs().mean(dim=(0, 1, 2))
    right = [c for c in range(16, 32)]
    zero_cols = [c for c in right if LEVELS[c % 11] == 0.0]
    one_cols = [c for c in right if LEVELS[c % 11] == 1.0]
    assert change[zero_cols].max() == 0.0 and change[one_cols].min() > 0.05   # and our map acted on the right


def test_builtin_differential_diffusion_frees_strength_zero_but_we_do_not(comfy, cw, world, dk, conds):
    """The fault we must not copy: the built-in node changes map-0 pixels at the last step."""
    import nodes

    model = cw.make_model(world, "eps")
    src = world.latent(0)
    zero = torch.zeros(1, 256, 256)
    (dd_model,) = comfy.run_node("DifferentialDiffusion", model=model)
    (masked,) = nodes.SetLatentNoiseMask().set_mask({"samples": src}, zero)
    (builtin,) = nodes.KSampler().sample(dd_model, 0, 10, 1.0, "euler", "karras", conds["sharp"], conds["uncond"], masked)
    assert (builtin["samples"] - src).abs().max() > 0.1
    ours = dk(model, src, zero, conds["sharp"], conds["uncond"], scheduler="karras", steps=10, mode="timestep")
    assert torch.equal(ours, src)


def test_inpaint_concat_mask_follows_the_threshold(comfy, cw, world, dk, conds):
    model = cw.make_model(world, "eps")
    model.model.set_inpaint()
    model, rec = recording(model)
    net = cw.net_of(model)
    net.concats.clear()
    dk(model, world.latent(0), level_map(), conds["graded"], conds["uncond"], steps=10)
    assert len(net.concats) == len(rec) > 0
    for (sigma, mask), concat in zip(rec, net.concats):
        assert concat.shape[1] == 5   # mask + masked image
        assert torch.equal(concat[0, 0], mask[0, 0].round())   # the mask channel is this step's mask
    first_steps = torch.stack([c[0, 0].sum() for c in net.concats])
    assert first_steps[0] < first_steps[-1]   # it grows as pixels are freed (ComfyUI's own would stay static)


def test_step_mask_never_reads_a_value_back_to_the_host(pack):
    """The per-step work is tensor ops on the sampling device: no .item()/scalar read (a GPU sync)."""
    from dde_pack.nodes.core import schedule
    from dde_world.probes import host_reads

    g = torch.rand(2, 1, 16, 16)
    run = schedule.DifferentialRun(start=schedule.start_steps_step(g, 10), strength_map=g,
                                   sigmas=torch.linspace(10, 0, 11), n_steps=10, softness=0.2, strength=0.8)
    out = []
    ops, reads = host_reads(lambda: out.append(run.mask(torch.tensor([5.0, 5.0]), torch.float16)))
    assert out[0].dtype == torch.float16 and out[0].shape == (2, 1, 16, 16)
    assert ops and reads == []


# -- every sampler x scheduler on the tiny random UNet -------------------------------------------------

def test_every_sampler_and_scheduler_runs_on_the_tiny_unet(comfy, tiny_models, dk):
    import comfy.samplers as cs
    import nodes

    (model,) = nodes.UNETLoader().load_unet(tiny_models["unet"], "default")
    torch.manual_seed(0)
    cond = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    src = torch.randn(1, 4, 8, 8)
    cmap = torch.zeros(1, 64, 64)
    cmap[:, :, 32:] = 1.0
    cmap[:, 32:, :32] = 0.5
    failures = []
    for sampler in cs.KSampler.SAMPLERS:
        for scheduler in cs.KSampler.SCHEDULERS:
            try:
                out = dk(model, src, cmap, cond, cond, sampler=sampler, scheduler=scheduler, steps=3, cfg=3.0, seed=1)
            except Exception as e:  # report all at once
                failures.append(f"{sampler}/{scheduler}: {type(e).__name__}: {e}")
                continue
            if not torch.isfinite(out).all():
                failures.append(f"{sampler}/{scheduler}: non-finite output")
            elif not torch.equal(out[..., :4, :4], src[..., :4, :4]):
                failures.append(f"{sampler}/{scheduler}: map-0 pixels changed")
            elif (out[..., 4:] - src[..., 4:]).abs().max() == 0:
                failures.append(f"{sampler}/{scheduler}: map-1 pixels did not change")
    assert failures == []


# -- pixel composite ------------------------------------------------------------------------------------

def test_composite_restores_original_where_map_is_zero(comfy):
    orig = torch.rand(2, 64, 64, 3)
    edit = torch.rand(2, 64, 64, 3)
    cmap = torch.zeros(1, 8, 8)
    cmap[:, :, 4:] = 1.0
    cmap[:, :, 3] = 0.5
    out = comfy.run_node("DDE_CompositeByChangeMap", original=orig, edited=edit, change_map=cmap, blend="map",
                         feather=0, invert=False)[0]
    assert torch.equal(out[:, :, :20], orig[:, :, :20])     # bilinear upsampling: zero up to the 0.5 cell's centre
    assert not torch.equal(out[:, :, 21:24], orig[:, :, 21:24])
    assert torch.allclose(out[:, :, 40:], edit[:, :, 40:])
    feathered = comfy.run_node("DDE_CompositeByChangeMap", original=orig, edited=edit, change_map=cmap, blend="changed",
                               feather=6, invert=False)[0]
    assert torch.equal(feathered[:, :, :20], orig[:, :, :20])
    assert ((feathered - orig).abs().sum(-1) > 0).float().mean() > 0.3


@pytest.mark.parametrize("weights,latent_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                                  (torch.float32, torch.bfloat16), (torch.float32, torch.float16)])
def test_half_precision_models_and_latents(comfy, tiny_models, dk, weights, latent_dtype):
    """fp16/bf16 weights and latents: the map is prepared in the sampling dtype, map-0 pixels stay exact."""
    import comfy.sd as csd

    model = csd.load_diffusion_model(tiny_models["paths"]["unet"], model_options={"dtype": weights})
    assert model.model.get_dtype() == weights
    torch.manual_seed(0)
    cond = [[torch.randn(1, 77, 768) * 0.5, {"pooled_output": torch.zeros(1, 768)}]]
    src = torch.randn(1, 4, 8, 8).to(latent_dtype)
    cmap = torch.zeros(1, 64, 64)
    cmap[:, :, 32:] = 1.0
    rec_model, rec = recording(model)
    out = dk(rec_model, src, cmap, cond, cond, steps=3, cfg=2.0, seed=2)
    assert torch.isfinite(out).all()
    assert torch.equal(out[..., :4].to(latent_dtype), src[..., :4])
    assert (out[..., 4:].float() - src[..., 4:].float()).abs().max() > 0
    assert {m.dtype for _, m in rec} == {latent_dtype}
