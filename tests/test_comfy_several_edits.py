"""Several edits at once on real ComfyUI sampling: k DiffEdit masks from one estimation, each concept's query inside its
own region (ComfyUI's regional conditioning), one Differential KSampler pass — checked on an analytic world with two
objects and an instruction for each, whose targets are known."""

import math

import pytest
import torch

from dde_world.analytic import AnalyticWorld
from dde_world.probes import iou

N = 10
STEPS = 20


@pytest.fixture(scope="module")
def two(comfy):
    """An analytic world of its own (its unconditional mixture includes the two-object scene's conditions)."""
    world = AnalyticWorld()
    return world, world.add_two_edits()


def picture(region, scale=8):
    return region.float().repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def concepts(comfy, cw, world, pairs, strengths=None):
    chain = None
    for i, (query, reference) in enumerate(pairs):
        strength = 1.0 if strengths is None else strengths[i]
        chain = comfy.run_node("DDE_EditConcept", query=cw.conditioning(world, query), strength=strength,
                               reference=None if reference is None else reference, previous=chain)[0]
    return chain


def masks_node(comfy, model, chain, latent, **settings):
    return comfy.run_node("DDE_DiffEditMasks", model=model, concepts=chain, latent={"samples": latent}, n=N, **settings).args


def mask_node(comfy, model, query, latent, reference, **settings):
    return comfy.run_node("DDE_DiffEditMask", model=model, query=query, latent={"samples": latent}, reference=reference,
                          n=N, **settings).args


def dks(comfy, model, positive, negative, latent, change_map, cfg=1.0, scheduler="normal"):
    return comfy.run_node("DDE_DifferentialKSampler", model=model, seed=0, steps=STEPS, cfg=cfg, sampler_name="euler",
                          scheduler=scheduler, positive=positive, negative=negative, latent_image={"samples": latent},
                          change_map=change_map)[0]["samples"]


def distance(x, target, region):
    return float((x[..., region] - target[..., region]).abs().mean())


def kept_cells(change_map):
    """Latent cells the change map leaves at 0 (the Differential KSampler keeps them bit-exact)."""
    return torch.nn.functional.avg_pool2d(change_map[:, None], 8)[0, 0] == 0


# -- one estimation for k concepts ---------------------------------------------------------------------

@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_k_heats_from_one_estimation_are_the_k_separate_diffedit_masks(comfy, cw, two, cfg):
    """On this CPU (auto batch: one evaluation per call) every heat and mask is bit-for-bit the single-pair DiffEdit
    Mask's, and a reference the concepts share is evaluated once per draw: (k + 1) n evaluations instead of 2 k n."""
    world, e = two
    model = cw.make_model(world, "eps")
    net = cw.net_of(model)
    ref = cw.conditioning(world, e.reference)
    neg = cw.conditioning(world, None)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref), (e.both, ref)])
    _, _, _, heats, _ = masks_node(comfy, model, chain, e.latent, cfg=cfg, negative=neg)
    one = len(net.calls), sum(net.calls)
    net.calls.clear()
    separate = [mask_node(comfy, model, c.query, e.latent, ref, cfg=cfg, negative=neg) for c in chain]
    uncond = int(cfg != 1.0)      # with cfg: the negative, evaluated once per draw for every concept
    assert one == ((3 + 1 + uncond) * N,) * 2     # three queries, their shared reference
    assert (len(net.calls), sum(net.calls)) == (3 * (2 + uncond) * N,) * 2
    for i, (heat, mask, _, _) in enumerate(separate):
        assert torch.equal(heats[i], heat[0]), i
    regions = comfy.module("nodes.core.regions").regions(torch.stack([s[0] for s in separate]),
                                                         torch.stack([s[1] for s in separate]))
    _, _, owned, _, _ = masks_node(comfy, model, chain, e.latent, cfg=cfg, negative=neg)
    assert torch.equal(owned, regions[:, 0])


def test_one_concept_is_diffedit_mask_and_both_are_the_exact_posterior_difference(comfy, cw, two):
    """The single-pair estimation is the k = 1 case of the same code: DiffEdit Masks with one concept gives DiffEdit
    Mask's heat bit for bit, and both are mean |x0(query) - x0(reference)| of the world's exact posterior."""
    world, e = two
    model = cw.make_model(world, "eps")
    q, r = cw.conditioning(world, e.edit_a), cw.conditioning(world, e.reference)
    heat, mask, _, _ = mask_node(comfy, model, q, e.latent, r)
    _, change_map, owned, heats, _ = masks_node(comfy, model, concepts(comfy, cw, world, [(e.edit_a, r)]), e.latent)
    assert torch.equal(heats, heat) and torch.equal(owned, mask) and torch.equal(change_map, mask)
    raw = comfy.module("nodes.diffedit_sampling").estimate_heat(model, q, r, {"samples": e.latent}, 0.5, N, 0)
    sigma = torch.tensor([comfy.module("nodes.diffedit_sampling").noise_level(model, 0.5)])
    draws = comfy.module("nodes.core.diffedit_math").draw_noise(0, range(N), e.latent.shape)
    expected = torch.zeros(1, world.h, world.w, dtype=torch.float64)
    for eps in draws:
        x = e.latent + sigma * eps
        dq = world.posterior_mean(x, sigma, [e.edit_a]).double()
        dr = world.posterior_mean(x, sigma, [e.reference]).double()
        expected += (dq - dr).abs().mean(1) / N
    assert (raw.double() - expected).abs().max() <= 1e-5 and float(expected.max()) > 0.3


def direct_heat(comfy, model, query, reference, uncond, latent, n, seed, cfg, per_call, separate):
    """DiffEdit's estimation written out for one pair: the loop DiffEdit Mask ran before it estimated k pairs."""
    import comfy.samplers as cs

    core = comfy.module("nodes.core.diffedit_math")
    sigma_value = comfy.module("nodes.diffedit_sampling").noise_level(model, 0.5)
    out = {}

    class Direct(cs.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                   disable_pbar=False):
            inner, options = model_wrap.inner_model, extra_args["model_options"]
            conds = [model_wrap.conds["positive"], model_wrap.conds["negative"]]
            if cfg != 1.0:
                conds.append(model_wrap.conds["uncond"])
            b, sigma = latent_image.shape[0], sigmas[0]
            total = torch.zeros((b, *latent_image.shape[2:]), dtype=torch.float32)
            for start, stop in core.chunks(n, per_call):
                k = stop - start
                eps = core.draw_noise(seed, range(start, stop), latent_image.shape).reshape(k * b, *latent_image.shape[1:])
                x = inner.model_sampling.noise_scaling(sigma, eps, latent_image.repeat(k, 1, 1, 1))
                s = sigma.reshape(1).expand(k * b)
                if separate:
                    preds = [cs.calc_cond_batch(inner, [c], x, s, options)[0] for c in conds]
                else:
                    preds = cs.calc_cond_batch(inner, conds, x, s, options)
                q, r = preds[0], preds[1]
                if cfg != 1.0:
                    q = cs.cfg_function(inner, preds[0], preds[2], cfg, x, s, options, conds[0], conds[2])
                    r = cs.cfg_function(inner, preds[1], preds[2], cfg, x, s, options, conds[1], conds[2])
                diff = (q - r).abs().float().mean(dim=1)
                total += diff.reshape(k, b, *diff.shape[1:]).sum(0)
            out["heat"] = total / n
            return latent_image

    guider = cs.CFGGuider(model)
    conds = {"positive": query, "negative": reference}
    if cfg != 1.0:
        conds["uncond"] = uncond
    guider.inner_set_conds(conds)
    guider.sample(torch.zeros_like(latent), latent, Direct(), torch.tensor([sigma_value, 0.0]), disable_pbar=True, seed=seed)
    return out["heat"]


@pytest.mark.parametrize("family,cfg,batch_size", [("eps", 1.0, 0), ("eps", 2.0, 0), ("v", 1.0, 6), ("flow", 2.0, 9),
                                                   ("flow", 3.0, 2)])
def test_single_pair_estimation_is_bit_for_bit_the_direct_loop(comfy, cw, two, family, cfg, batch_size):
    """DiffEdit Mask is the k = 1 case of the k-pair estimation and still computes exactly what its direct loop
    computes (same draws, same calls, same arithmetic): the heats are equal bit for bit."""
    world, e = two
    model = cw.make_model(world, family)
    q, r, u = (cw.conditioning(world, i) for i in (e.edit_a, e.reference, None))
    heat = comfy.module("nodes.diffedit_sampling").estimate_heat(model, q, r, {"samples": e.latent}, 0.5, 7, 3, cfg, u,
                                                                  batch_size)
    per_draw = 2 + (cfg != 1.0)
    per_call, separate = comfy.module("nodes.core.diffedit_math").draws_per_call(batch_size or 1, per_draw, 7)
    assert torch.equal(heat, direct_heat(comfy, model, q, r, u, e.latent, 7, 3, cfg, per_call, separate))


@pytest.mark.parametrize("batch_size,cfg", [(1, 1.0), (2, 1.0), (5, 1.0), (30, 1.0), (4, 2.0), (64, 2.0)])
def test_model_calls_are_ceil_of_distinct_evaluations_over_batch_and_heats_do_not_depend_on_it(comfy, cw, two, batch_size,
                                                                                               cfg):
    world, e = two
    model = cw.make_model(world, "flow")
    net = cw.net_of(model)
    ref = cw.conditioning(world, e.reference)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, None)])   # no reference: its query zeroed out
    _, _, _, heats, _ = masks_node(comfy, model, chain, e.latent, cfg=cfg, batch_size=batch_size)
    per_draw = 4 + (cfg != 1.0)   # query a, reference, query b, query b zeroed (+ uncond)
    assert sum(net.calls) == per_draw * N and max(net.calls) <= batch_size
    draws = batch_size // per_draw          # whole draws per call; below one draw each conditioning gets its own calls
    calls = math.ceil(N / draws) if draws else per_draw * math.ceil(N / batch_size)
    assert len(net.calls) == calls
    net.calls.clear()
    _, _, _, one_by_one, _ = masks_node(comfy, model, chain, e.latent, cfg=cfg, batch_size=1)
    assert torch.allclose(heats, one_by_one, atol=1e-6)


# -- the regional conditioning ---------------------------------------------------------------------------

class Probe:
    """A SAMPLER that asks the guider for one denoised prediction at ``x`` and keeps it."""

    def __init__(self, x):
        import comfy.samplers

        class Sampler(comfy.samplers.Sampler):
            def sample(inner, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
                       disable_pbar=False):
                self.out = model_wrap(x, sigmas[:1].expand(x.shape[0]), model_options=extra_args["model_options"],
                                      seed=0)
                return latent_image

        self.sampler = Sampler()


def predict(model, positive, negative, x, sigma):
    import comfy.samplers

    probe = Probe(x)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(1.0)
    guider.sample(torch.zeros_like(x), torch.zeros_like(x), probe.sampler, torch.tensor([sigma, 0.0]), disable_pbar=True)
    return probe.out


def test_each_concept_predicts_inside_its_own_region_and_the_base_everywhere_else(comfy, cw, two):
    """ComfyUI's calc_cond_batch, given the node's positive, predicts with concept A's query in the cells only A
    touches, B's in B's, the base in the cells none touches (bit for bit), and blends where both touch a cell."""
    world, e = two
    model = cw.make_model(world, "eps")
    ref = cw.conditioning(world, e.reference)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref)])
    positive, _, owned, _, _ = masks_node(comfy, model, chain, e.latent, grow=48)   # masks that overlap
    weights, rest = comfy.module("nodes.core.regions").regional_weights(owned[:, None], (world.h, world.w))
    assert bool(((weights > 0).sum(0) > 1).any())            # some cells are shared
    assert len(positive) == 3 and [c[1]["mask"].shape for c in positive] == [(1, world.h, world.w)] * 3
    assert all(c[1]["set_area_to_bounds"] is False and c[1]["mask_strength"] == 1.0 for c in positive)
    assert all("mask" not in c[1] for q in [ref, *(k.query for k in chain)] for c in q)   # inputs untouched
    sigma = 2.0
    x = e.latent + sigma * torch.randn(e.latent.shape, generator=torch.Generator().manual_seed(1))
    uncond = cw.conditioning(world, None)
    got = predict(model, positive, uncond, x, sigma)
    each = [predict(model, c, uncond, x, sigma) for c in (chain[0].query, chain[1].query, ref)]
    for w, p in zip([weights[0, 0], weights[1, 0], rest[0]], each):
        alone = w == 1
        assert bool(alone.any()) and torch.equal(got[..., alone], p[..., alone])
    blend = weights[0, 0] * each[0] + weights[1, 0] * each[1] + rest[0] * each[2]
    assert torch.allclose(got, blend, atol=1e-5)
    assert (weights.sum(0)[0] + rest[0] - 1).abs().max() <= 1e-6
    assert (sum(c[1]["mask"] for c in positive) - 1).abs().max() <= 1e-6


# -- two objects, two instructions, one pass ------------------------------------------------------------

@pytest.mark.parametrize("family,scheduler,cfg", [("eps", "normal", 3.0), ("v", "normal", 3.0), ("flow", "simple", 3.0),
                                                 ("eps", "normal", 1.0)])
def test_two_edits_in_one_pass_reach_each_objects_target_and_keep_the_rest_bit_exact(comfy, cw, two, family, scheduler,
                                                                                    cfg):
    """Concepts -> DiffEdit Masks -> Differential KSampler: object A ends as instruction A says, object B as
    instruction B says, every cell outside both regions is the input bit for bit — as good as the two edits one
    after the other (two DiffEdit Mask + two Differential KSampler runs), with fewer model calls."""
    world, e = two
    model = cw.make_model(world, family)
    net = cw.net_of(model)
    ref, uncond = cw.conditioning(world, e.reference), cw.conditioning(world, None)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref)])
    positive, change_map, owned, _, _ = masks_node(comfy, model, chain, e.latent)
    estimation = len(net.calls), sum(net.calls)
    out = dks(comfy, model, positive, uncond, e.latent, change_map, cfg, scheduler)
    one_pass = len(net.calls), sum(net.calls)
    assert iou(owned[0], picture(e.region_a)) >= 0.9 and iou(owned[1], picture(e.region_b)) >= 0.9
    kept = kept_cells(change_map)
    assert torch.equal(out[..., kept], e.latent[..., kept]) and int(kept.sum()) > 0.7 * kept.numel()

    net.calls.clear()
    x = e.latent
    for edit in (e.edit_a, e.edit_b):
        query = cw.conditioning(world, edit)
        _, mask, _, _ = mask_node(comfy, model, query, x, ref)
        x = dks(comfy, model, query, uncond, x, mask, cfg, scheduler)
    sequential = len(net.calls), sum(net.calls)
    assert torch.equal(x[..., kept], e.latent[..., kept])

    for name, region in (("A", e.region_a), ("B", e.region_b)):
        before, ours, theirs = (distance(v, e.target, region) for v in (e.latent, out, x))
        print(f"{family} object {name}: mean |latent - target| {before:.3f} before, {ours:.4f} one pass, "
              f"{theirs:.4f} one edit after the other")
        assert ours < 0.05 * before and ours <= theirs * 1.05 + 1e-3
    print(f"{family} cfg {cfg} model calls (forwards, evaluations): one pass {one_pass} (estimation {estimation}), "
          f"one after the other {sequential}")
    negative = int(cfg != 1.0)   # ComfyUI skips the negative at cfg 1
    assert estimation == (3 * N, 3 * N)                          # query a, query b, their shared reference
    assert one_pass == (3 * N + STEPS, 3 * N + (3 + negative) * STEPS)   # a step: queries a and b, the base (+ negative)
    assert sequential == (2 * (2 * N + STEPS), 2 * (2 * N + (1 + negative) * STEPS))


def test_each_concept_carries_its_own_strength_into_the_change_map(comfy, cw, two):
    """The change map is strength x region: a concept of strength 0 leaves its object bit-exact while the other
    changes; a grey strength is that grey in its region."""
    world, e = two
    model = cw.make_model(world, "eps")
    ref, uncond = cw.conditioning(world, e.reference), cw.conditioning(world, None)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref)], strengths=[0.4, 0.0])
    positive, change_map, owned, _, _ = masks_node(comfy, model, chain, e.latent)
    assert torch.equal(change_map[0], 0.4 * owned[0]) and int(owned[1].sum()) > 0
    out = dks(comfy, model, positive, uncond, e.latent, change_map)
    assert torch.equal(out[..., e.region_b], e.latent[..., e.region_b])
    assert distance(out, e.target, e.region_a) < 0.05 * distance(e.latent, e.target, e.region_a)


def test_overlapping_masks_go_to_the_larger_heat_and_each_object_still_reaches_its_target(comfy, cw, two):
    world, e = two
    model = cw.make_model(world, "flow")
    ref, uncond = cw.conditioning(world, e.reference), cw.conditioning(world, None)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref)])
    positive, change_map, owned, heats, _ = masks_node(comfy, model, chain, e.latent, grow=40)
    separate = [mask_node(comfy, model, c.query, e.latent, ref, grow=40)[1][0] for c in chain]
    overlap = (separate[0] > 0) & (separate[1] > 0)
    assert int(overlap.sum()) > 1000
    to_a = overlap & (heats[0] >= heats[1])      # ties (both heats clipped to 0 far from either object) go to A, the first
    to_b = overlap & (heats[1] > heats[0])
    assert bool(to_a.any()) and bool(to_b.any()) and bool((overlap & (heats[0] == heats[1])).any())
    assert bool(owned[0][to_a].all()) and not bool(owned[1][to_a].any())
    assert bool(owned[1][to_b].all()) and not bool(owned[0][to_b].any())
    assert torch.equal(owned.sum(0), ((separate[0] + separate[1]) > 0).float())
    out = dks(comfy, model, positive, uncond, e.latent, change_map, 1.0, "simple")
    for region in (e.region_a, e.region_b):
        assert distance(out, e.target, region) < 0.05 * distance(e.latent, e.target, region)
    kept = kept_cells(change_map)
    assert torch.equal(out[..., kept], e.latent[..., kept])


def test_base_defaults_to_the_first_reference_and_a_connected_base_replaces_it(comfy, cw, two):
    world, e = two
    model = cw.make_model(world, "eps")
    ref = cw.conditioning(world, e.reference)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.edit_b, ref)])
    positive = masks_node(comfy, model, chain, e.latent)[0]
    assert positive[-1][0] is ref[0][0] and positive[-1][1]["mask"].sum() > 0
    other = cw.conditioning(world, e.both)
    positive = masks_node(comfy, model, chain, e.latent, base=other)[0]
    assert positive[-1][0] is other[0][0]
    no_reference = concepts(comfy, cw, world, [(e.edit_a, None)])
    base = masks_node(comfy, model, no_reference, e.latent)[0][-1]
    assert torch.equal(base[0], torch.zeros_like(no_reference[0].query[0][0]))


def test_edit_concept_appends_to_a_new_chain_and_never_changes_the_previous_one(comfy, cw, two):
    world, e = two
    first = concepts(comfy, cw, world, [(e.edit_a, None)])
    second = comfy.run_node("DDE_EditConcept", query=cw.conditioning(world, e.edit_b), strength=0.3, previous=first)[0]
    assert len(first) == 1 and len(second) == 2 and second[0] is first[0] and second[1].strength == 0.3


def test_bad_input_names_the_node_and_the_input(comfy, cw, two):
    world, e = two
    model = cw.make_model(world, "eps")
    q = cw.conditioning(world, e.edit_a)
    with pytest.raises(ValueError, match="Edit Concept: input 'strength'"):
        comfy.run_node("DDE_EditConcept", query=q, strength=1.5)
    with pytest.raises(ValueError, match="Edit Concept: input 'previous' expected edit concepts"):
        comfy.run_node("DDE_EditConcept", query=q, previous=q)
    with pytest.raises(ValueError, match="Edit Concept: input 'query'"):
        comfy.run_node("DDE_EditConcept", query=[])
    chain = concepts(comfy, cw, world, [(e.edit_a, None)])
    with pytest.raises(ValueError, match=r"DiffEdit Masks \(several edits\): input 'concepts'"):
        comfy.run_node("DDE_DiffEditMasks", model=model, concepts=q, latent={"samples": e.latent})
    net = cw.net_of(model)
    with pytest.raises(ValueError, match=r"DiffEdit Masks \(several edits\): input 'latent' expected an image"):
        comfy.run_node("DDE_DiffEditMasks", model=model, concepts=chain, latent={"samples": torch.zeros(1, 4, 3, 32, 32)})
    with pytest.raises(ValueError, match=r"DiffEdit Masks \(several edits\): input 'n'"):
        comfy.run_node("DDE_DiffEditMasks", model=model, concepts=chain, latent={"samples": e.latent}, n=0)
    assert net.calls == []


def test_a_video_latent_is_refused_before_any_model_call(comfy):
    """Several edits at once work on pictures: a video model's latent is an error naming the latent (DiffEdit Mask,
    once per edit, handles video)."""
    import importlib

    from dde_world import families

    wrappers = importlib.import_module("comfy.patcher_extension").WrappersMP
    model = families.model_patcher("wan21")
    calls = []
    model.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, "count", lambda executor, *a, **k: calls.append(1) or executor(*a, **k))
    chain = comfy.run_node("DDE_EditConcept", query=families.conditioning("wan21", 0))[0]
    with pytest.raises(ValueError, match=r"DiffEdit Masks \(several edits\): input 'latent' expected an image latent "
                                         r"\(several edits at once work on pictures"):
        comfy.run_node("DDE_DiffEditMasks", model=model, concepts=chain, latent={"samples": torch.zeros(1, 16, 2, 8, 8)})
    assert calls == []


def test_a_concept_whose_prompts_agree_gets_no_region_no_conditioning_entry_and_a_message(comfy, cw, two):
    world, e = two
    model = cw.make_model(world, "eps")
    ref = cw.conditioning(world, e.reference)
    chain = concepts(comfy, cw, world, [(e.edit_a, ref), (e.reference, ref)])
    out = comfy.run_node("DDE_DiffEditMasks", model=model, concepts=chain, latent={"samples": e.latent}, n=N)
    positive, change_map, owned, _, _ = out.args
    assert owned[1].sum() == 0 and torch.equal(change_map[0], owned[0])
    assert len(positive) == 2 and positive[0][0] is chain[0].query[0][0] and positive[1][0] is ref[0][0]
    said = out.ui["dde_messages"]
    assert any(m.startswith("concept 2: the query and the reference give the same prediction") for m in said), said
    assert not any(m.startswith("concept 1") for m in said)
    assert out.ui["dde_overlay"][0]["label"].startswith("2 concepts, regions ")


def test_a_combined_query_shares_its_weight_so_every_cell_still_adds_up_to_one(comfy, cw, two):
    """Conditioning Combine gives a query two entries: each gets half its concept's weight, and ComfyUI averages
    them inside the region as it averages combined prompts anywhere."""
    world, e = two
    model = cw.make_model(world, "eps")
    ref = cw.conditioning(world, e.reference)
    combined = cw.conditioning(world, e.edit_a) + cw.conditioning(world, e.both)
    chain = comfy.run_node("DDE_EditConcept", query=combined, reference=ref)[0]
    chain = comfy.run_node("DDE_EditConcept", query=cw.conditioning(world, e.edit_b), reference=ref, previous=chain)[0]
    positive, _, owned, _, _ = masks_node(comfy, model, chain, e.latent)
    assert len(positive) == 4
    total = sum(c[1]["mask"] for c in positive)
    assert (total - 1).abs().max() <= 1e-6
    assert torch.equal(positive[0][1]["mask"], positive[1][1]["mask"]) and float(positive[0][1]["mask"].max()) == 0.5
