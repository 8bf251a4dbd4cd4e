"""DiffEdit on real ComfyUI sampling, checked against the analytic world's ground truth."""

import math

import pytest
import torch

from dde_world.probes import iou

SCENES = range(4)


def gt_mask(world, scene, scale=8):
    return world.scenes[scene].region.float().repeat_interleave(scale, 0).repeat_interleave(scale, 1)


@pytest.fixture(scope="module")
def mask_node(comfy):
    def run(model, query, latent, reference=None, strength=0.5, n=10, seed=0, cfg=1.0, method="rescale", threshold=0.5,
            ratio=3.0, percentile=0.8, smooth=0.0, grow=0, batch_size=0, negative=None, image=None):
        return comfy.run_node("DDE_DiffEditMask", model=model, query=query, latent={"samples": latent},
                              strength=strength, n=n, seed=seed, cfg=cfg, threshold_method=method, threshold=threshold,
                              clamp_ratio=ratio, percentile=percentile, smooth=smooth, grow=grow, batch_size=batch_size,
                              reference=reference, negative=negative, image=image)

    return run


@pytest.fixture(scope="module")
def core(comfy):
    return comfy.module("nodes.core.diffedit_math")


@pytest.mark.parametrize("family", ["eps", "v", "flow"])
def test_mask_iou_with_the_ground_truth_region_for_every_scene(cw, world, mask_node, core, family):
    model = cw.make_model(world, family)
    for s in SCENES:
        heat, mask, shown, area = mask_node(model, cw.conditioning(world, world.query_id(s)), world.latent(s),
                                            cw.conditioning(world, world.reference_id(s)), method="minmax")
        assert area == float(mask.mean())
        assert heat.shape == mask.shape == (1, 256, 256) and shown.shape == (1, 256, 256, 3)
        assert float(heat.min()) == 0.0 and float(heat.max()) == 1.0
        assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
        score = iou(mask[0], gt_mask(world, s))
        print(f"{family} scene {s} ({world.scenes[s].name}): IoU {score:.3f}")
        assert score >= 0.9
        # the default (rescale, outliers clipped) cuts lower: the whole region, a rim of at most a latent cell more
        _, default, _, _ = mask_node(model, cw.conditioning(world, world.query_id(s)), world.latent(s),
                                     cw.conditioning(world, world.reference_id(s)))
        gt = gt_mask(world, s)
        recall = float((default * gt).sum() / gt.sum())
        rim = core.grow(gt_mask(world, s)[None], 8)[0]
        print(f"   default: IoU {iou(default[0], gt):.3f}, recall {recall:.4f}")
        assert recall >= 0.99 and float((default[0] * (1 - rim)).sum()) == 0.0


@pytest.mark.parametrize("batch_size,cfg", [(1, 1.0), (2, 1.0), (4, 1.0), (6, 1.0), (20, 1.0), (3, 2.0), (6, 2.0)])
def test_model_calls_are_ceil_of_evaluations_over_batch(cw, world, mask_node, batch_size, cfg):
    model = cw.make_model(world, "eps")
    net = cw.net_of(model)
    n = 10
    mask_node(model, cw.conditioning(world, world.query_id(0)), world.latent(0), cw.conditioning(world, world.reference_id(0)),
              n=n, batch_size=batch_size, cfg=cfg)
    per_draw = 2 if cfg == 1.0 else 3
    assert len(net.calls) == math.ceil(per_draw * n / batch_size)
    assert sum(net.calls) == per_draw * n
    assert max(net.calls) <= batch_size


def test_auto_batch_is_single_evaluations_on_cpu_and_memory_bound_elsewhere(cw, world, mask_node, core):
    model = cw.make_model(world, "flow")
    mask_node(model, cw.conditioning(world, world.query_id(1)), world.latent(1), n=10)
    assert cw.net_of(model).calls == [1] * 20
    assert core.auto_batch(10, 2, "cuda", lambda e: True) == 20
    assert core.auto_batch(10, 2, "cuda", lambda e: e <= 6) == 6      # 10 -> 5 -> 3 draws
    assert core.auto_batch(10, 3, "mps", lambda e: False) == 3          # never below one draw per call
    assert core.auto_batch(10, 2, "cpu", lambda e: True) == 1


def test_same_seed_same_mask_different_seed_different_draws(cw, world, mask_node):
    model = cw.make_model(world, "eps")
    args = (model, cw.conditioning(world, world.query_id(2)), world.latent(2), cw.conditioning(world, world.reference_id(2)))
    a = mask_node(*args, seed=1, n=3)
    b = mask_node(*args, seed=1, n=3)
    c = mask_node(*args, seed=2, n=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_batched_latents_give_per_image_masks(cw, world, mask_node, core):
    model = cw.make_model(world, "eps")
    latent = torch.cat([world.latent(0), world.latent(3)])
    query = [[torch.cat([world.context(world.query_id(0)), world.context(world.query_id(3))]), {}]]
    reference = [[torch.cat([world.context(world.reference_id(0)), world.context(world.reference_id(3))]), {}]]
    heat, mask, _, _ = mask_node(model, query, latent, reference, method="minmax")
    assert mask.shape == (2, 256, 256)
    assert iou(mask[0], gt_mask(world, 0)) >= 0.9
    assert iou(mask[1], gt_mask(world, 3)) >= 0.9


def test_threshold_methods_and_options(cw, world, mask_node, core):
    model = cw.make_model(world, "eps")
    args = (model, cw.conditioning(world, world.query_id(0)), world.latent(0), cw.conditioning(world, world.reference_id(0)))
    gt = gt_mask(world, 0)
    for method in ("clamp", "otsu"):
        assert iou(mask_node(*args, method=method)[1][0], gt) >= 0.85, method
    top10 = mask_node(*args, method="percentile", percentile=0.9)[1].mean().item()
    top30 = mask_node(*args, method="percentile", percentile=0.7)[1].mean().item()
    assert 0.1 <= top10 < top30 and top30 >= 0.3    # at least the asked share (ties at the cut are kept)
    base = mask_node(*args)[1]
    grown = mask_node(*args, grow=4)[1]
    shrunk = mask_node(*args, grow=-4)[1]
    assert grown.sum() > base.sum() > shrunk.sum()
    assert torch.equal(grown * base, base) and torch.equal(shrunk * base, shrunk)
    image = world.decode(world.latent(0))[:, :128, :128]   # a picture of another size sets the output size
    heat, mask, shown, _ = mask_node(*args, smooth=3.0, image=image)
    assert heat.shape == (1, 128, 128) and shown.shape == (1, 128, 128, 3)


def test_bad_input_names_the_node_and_input(comfy, cw, world, mask_node):
    model = cw.make_model(world, "eps")
    q = cw.conditioning(world, world.query_id(0))
    with pytest.raises(ValueError, match="DiffEdit Mask: input 'n'"):
        mask_node(model, q, world.latent(0), n=0)
    with pytest.raises(ValueError, match="DiffEdit Mask: input 'strength'"):
        mask_node(model, q, world.latent(0), strength=0.0)
    with pytest.raises(ValueError, match="DiffEdit Mask: input 'latent'"):
        mask_node(model, q, torch.zeros(4, 32, 32))


# -- the edit ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def edit_node(comfy):
    def run(model, query, latent, mask, steps=20, ratio=0.8, cfg=1.0, scheduler="normal", refine=2, invert=False,
            reference=None, negative=None):
        return comfy.run_node("DDE_DiffEditEdit", model=model, query=query, latent={"samples": latent}, mask=mask,
                              steps=steps, encode_ratio=ratio, cfg=cfg, scheduler=scheduler, refine=refine,
                              invert=invert, reference=reference, negative=negative)[0]["samples"]

    return run


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_edit_keeps_outside_exactly_and_moves_inside_to_the_query(cw, world, edit_node, family):
    model = cw.make_model(world, family)
    for s in (0, 2):
        src = world.latent(s)
        region = world.scenes[s].region
        out = edit_node(model, cw.conditioning(world, world.query_id(s)), src, gt_mask(world, s).unsqueeze(0),
                        cfg=3.0, reference=cw.conditioning(world, world.reference_id(s)))
        assert torch.equal(out[..., ~region], src[..., ~region])
        target = world.latent(s, "query")
        inside = (out[..., region] - target[..., region]).abs().mean().item()
        before = (src[..., region] - target[..., region]).abs().mean().item()
        print(f"{family} scene {s}: mean |edit - query| inside {inside:.4f} (input was {before:.4f})")
        assert inside < 0.1 * before


@pytest.mark.parametrize("family,role,refine,tol", [
    ("eps", "reference", 3, 1e-4),
    ("flow", "graded", 3, 1e-3),
    ("flow", "reference", 8, 2e-2),   # a sharp (tau 0.05) mixture: noise->data contracts ~20x, inversion amplifies
])
def test_inversion_then_decode_with_the_same_conditioning_reconstructs(cw, world, edit_node, family, role, refine, tol):
    model = cw.make_model(world, family)
    src = world.latent(0)
    cond = cw.conditioning(world, world.role_id(0, role))
    out = edit_node(model, cond, src, torch.ones(1, 256, 256), ratio=1.0, refine=refine, reference=cond)
    err = (out - src).abs().max().item()
    print(f"{family}/{role} refine {refine}: max reconstruction error {err:.2e}")
    assert err <= tol


def test_decode_puts_back_the_inverted_latent_of_exactly_the_current_level(comfy, cw, world):
    import comfy.sample as csample
    import comfy.samplers as cs

    de = comfy.module("nodes.diffedit_sampling")
    model = cw.make_model(world, "eps")
    src = world.latent(0)
    mask = gt_mask(world, 0).unsqueeze(0)
    ref = cw.conditioning(world, world.reference_id(0))
    sampler = de.DiffEditSampler(mask, ref, refine=1)
    sigmas = cs.KSampler(model, 10, "cpu", "euler", "normal", 0.7).sigmas
    seen = []
    csample.sample_custom(model, torch.zeros_like(src), 2.0, sampler, sigmas, cw.conditioning(world, world.query_id(0)),
                          de.zero_out(ref), src, callback=lambda i, d, x, total: seen.append((i, x.clone())), seed=0)
    steps = len(sigmas) - 1
    outside = ~world.scenes[0].region
    decode = [(i - steps, x) for i, x in seen if i >= steps]
    assert len(decode) == steps
    distinct = 0
    for j, x in decode:
        assert torch.equal(x[..., outside], sampler.inverted[j + 1][..., outside])     # level j+1 after step j: no lag
        if j + 2 <= steps and not torch.equal(sampler.inverted[j + 1], sampler.inverted[j + 2]):
            distinct += 1
            assert not torch.equal(x[..., outside], sampler.inverted[j + 2][..., outside])
    assert distinct >= steps // 2


def test_sampler_object_in_sampler_custom_advanced_matches_the_edit_node(comfy, cw, world, edit_node):
    model = cw.make_model(world, "flow")
    src = world.latent(2)
    mask = gt_mask(world, 2).unsqueeze(0)
    q, r = cw.conditioning(world, world.query_id(2)), cw.conditioning(world, world.reference_id(2))
    neg = comfy.module("nodes.diffedit_sampling").zero_out(q)
    sampler = comfy.run_node("DDE_DiffEditSampler", mask=mask, refine=2, invert=False, reference=r)[0]
    guider = comfy.run_node("CFGGuider", model=model, positive=q, negative=neg, cfg=3.0)[0]
    sigmas = comfy.run_node("BasicScheduler", model=model, scheduler="normal", steps=20, denoise=0.8)[0]
    noise = comfy.run_node("DisableNoise")[0]
    out = comfy.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                         latent_image={"samples": src})[0]["samples"]
    ref = edit_node(model, q, src, mask, cfg=3.0, reference=r)
    region = world.scenes[2].region
    assert (out - ref).abs().max().item() <= 1e-5
    assert (out[..., region] - world.latent(2, "query")[..., region]).abs().mean() < 0.03


def test_interrupt_stops_mask_estimation(comfy, cw, world, mask_node):
    import comfy.model_management as mm

    model = cw.make_model(world, "eps")
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            mask_node(model, cw.conditioning(world, world.query_id(0)), world.latent(0), n=4, batch_size=2)
    finally:
        mm.interrupt_current_processing(False)
    assert cw.net_of(model).calls == []


def test_mask_does_not_depend_on_batch_size(cw, world, mask_node):
    model = cw.make_model(world, "eps")
    args = (model, cw.conditioning(world, world.query_id(3)), world.latent(3), cw.conditioning(world, world.reference_id(3)))
    small = mask_node(*args, n=6, batch_size=2)[0]
    large = mask_node(*args, n=6, batch_size=12)[0]
    assert torch.allclose(small, large, atol=1e-6)


def test_sampler_without_reference_inverts_with_the_zeroed_query(comfy, cw, world):
    model = cw.make_model(world, "eps")
    q = cw.conditioning(world, world.query_id(0))
    zero = comfy.module("nodes.diffedit_sampling").zero_out(q)
    mask = gt_mask(world, 0).unsqueeze(0)
    sigmas = comfy.run_node("BasicScheduler", model=model, scheduler="normal", steps=10, denoise=0.8)[0]
    noise = comfy.run_node("DisableNoise")[0]
    outs = []
    for reference in (None, zero):
        sampler = comfy.run_node("DDE_DiffEditSampler", mask=mask, refine=1, invert=False, reference=reference)[0]
        guider = comfy.run_node("CFGGuider", model=model, positive=q, negative=zero, cfg=2.0)[0]
        outs.append(comfy.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                                   latent_image={"samples": world.latent(0)})[0])
    assert torch.equal(outs[0]["samples"], outs[1]["samples"])


def test_mask_does_not_depend_on_the_output_size_when_differences_exceed_one(comfy, tiny_models, mask_node):
    """Raw x0 differences above 1 latent unit (strength 0.9, cfg 7.5 on the tiny SD1.5 model; common on flow models
    and with cfg) are resampled to the picture, never clamped: the picture-size heat at the cell centres is the
    latent-grid heat up to resampling, and so is the mask wherever the heat is not within resampling of the cut."""
    import nodes

    from dde_world.probes import returned_locals

    model, clip, _ = nodes.CheckpointLoaderSimple().load_checkpoint(tiny_models["checkpoint"])
    q = nodes.CLIPTextEncode().encode(clip, "a red cat")[0]
    r = nodes.CLIPTextEncode().encode(clip, "a dog")[0]
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3)) * 5.0
    out = {}
    for size in (16, 128):
        out[size], seen = returned_locals("execute", lambda: mask_node(model, q, latent, r, strength=0.9, n=4, cfg=7.5,
                                                                       method="minmax", image=torch.zeros(1, size, size, 3)))
    assert float(seen["diff"].max()) > 1.5 and float((seen["diff"] > 1).float().mean()) > 0.2
    (heat_s, mask_s, _, _), (heat_b, mask_b, _, _) = out[16], out[128]
    centres = heat_b[:, 4::8, 4::8]            # the picture pixel next to each cell's centre (1/16 cell away)
    sure = (heat_s - 0.5).abs() > 0.1
    assert (centres - heat_s).abs().max().item() < 0.1
    assert torch.equal(mask_b[:, 4::8, 4::8][sure], mask_s[sure]) and int(sure.sum()) > 128
    assert abs(float(mask_b.mean()) - float(mask_s.mean())) < 0.05
