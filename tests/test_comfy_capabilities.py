"""The editing capabilities on real ComfyUI sampling: continuous strength on few-step runs, pre-fill
for new content, a change map from a before/after pair feeding the composite.

The analytic world gives the right answers (eps and flow families)."""

import pytest
import torch

from dde_world.probes import spearman


@pytest.fixture(scope="module")
def dk(comfy):

    def run(model, src, cmap, pos, neg, mode="step", steps=4, sampler="euler", scheduler="normal", seed=0, cfg=1.0,
            softness=0.0, fractional=False, prefill="original", prefill_above=0.5, same_noise=False):
        latent = {"samples": src}
        if same_noise:   # every image of the batch gets the noise of image 0
            latent["batch_index"] = [0] * src.shape[0]
        out = comfy.run_node("DDE_DifferentialKSampler", model=model, seed=seed, steps=steps, cfg=cfg,
                             sampler_name=sampler, scheduler=scheduler, positive=pos, negative=neg, latent_image=latent,
                             denoise=1.0, change_map=cmap, mode=mode, invert=False, strength=1.0, softness=softness,
                             fractional=fractional, prefill=prefill, prefill_above=prefill_above)[0]
        return out["samples"]

    return run


@pytest.fixture(scope="module")
def conds(cw, world):
    return {"graded": cw.conditioning(world, world.graded_id(0)), "uncond": cw.conditioning(world, None)}


def uniform(g, side=256):
    return torch.full((1, side, side), float(g))


def column_ramp(levels, h=32, scale=8):
    """Latent column c has value levels[c] (one column per level), upscaled so area averaging is exact."""
    cols = torch.tensor(levels, dtype=torch.float32)
    lat = cols.view(1, 1, -1).expand(1, h, len(levels))
    return lat.repeat_interleave(scale, 1).repeat_interleave(scale, 2).contiguous()


# -- continuous strength on few-step models --------------------------------------------------------------

@pytest.mark.parametrize("family", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["step", "denoise"])
def test_fractional_uniform_maps_give_strictly_increasing_change(comfy, cw, world, dk, conds, family, mode):
    model = cw.make_model(world, family)
    src = world.latent(0)
    gs = [0.30 + 0.05 * i for i in range(7)]
    plain = [float((dk(model, src, uniform(g), conds["graded"], conds["uncond"], mode=mode) - src).abs().mean())
             for g in gs]
    frac = [float((dk(model, src, uniform(g), conds["graded"], conds["uncond"], mode=mode, fractional=True) - src)
                  .abs().mean()) for g in gs]
    print(f"\n{family}/{mode} 4 steps, g 0.30..0.60: step {[round(v, 4) for v in plain]}\n"
          f"  fractional {[round(v, 4) for v in frac]}")
    assert all(b > a for a, b in zip(frac, frac[1:])), frac
    assert any(b == a for a, b in zip(plain, plain[1:]))   # without the option some neighbours are equal


def band_ratio(change):
    """Largest ratio of a jump between neighbouring levels to the typical jump on either side of it
    (the larger of the medians of the 3 jumps before and the 3 after).

    A band edge (a discontinuity) is a jump far above the jumps on both sides; a smooth curve whose
    slope changes between step intervals (a kink) stays near 1 against its steeper side."""
    j = torch.tensor([abs(b - a) for a, b in zip(change, change[1:])])
    ratios = []
    for i in range(len(j)):
        sides = [j[max(0, i - 3): i], j[i + 1: i + 4]]
        ref = max(float(side.median()) for side in sides if len(side))
        ratios.append(float(j[i]) / max(ref, 1e-12))
    return max(ratios)


@pytest.mark.parametrize("family,mode", [("eps", "step"), ("flow", "step")])
def test_fractional_four_step_ramp_is_smooth(comfy, cw, world, dk, conds, family, mode):
    """A ramp of 32 map levels (one uniform map per image of a batch with one noise, so every level
    sees the same picture and noise), 4 steps: with the option the change grows with the level and
    has no bands."""
    model = cw.make_model(world, family)
    levels = [i / 31 for i in range(32)]
    src = world.latent(0).repeat(32, 1, 1, 1)
    maps = torch.tensor(levels).view(32, 1, 1).expand(32, 64, 64).contiguous()
    out = dk(model, src, maps, conds["graded"], conds["uncond"], fractional=True, mode=mode, same_noise=True)
    change = [float(v) for v in (out - src).abs().mean(dim=(1, 2, 3))]
    plain = dk(model, src, maps, conds["graded"], conds["uncond"], mode=mode, same_noise=True)
    plain_change = [float(v) for v in (plain - src).abs().mean(dim=(1, 2, 3))]
    jumps = torch.tensor([abs(b - a) for a, b in zip(change, change[1:])])
    rho = spearman(levels, change)
    print(f"\n{family}/{mode} 4-step ramp of 32 levels: fractional spearman {rho:.4f}, max/median jump "
          f"{float(jumps.max() / jumps.median()):.2f}, band ratio {band_ratio(change):.2f}; "
          f"without: spearman {spearman(levels, plain_change):.4f}, band ratio {band_ratio(plain_change):.1f}"
          f"\n  change per level: {[round(v, 4) for v in change]}")
    assert change[0] == 0.0
    assert rho >= 0.99
    assert band_ratio(change) <= 2.0
    assert band_ratio(plain_change) > 10.0     # without the option: 4 bands


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun"])
def test_fractional_at_step_boundaries_equals_step_mode(comfy, cw, world, dk, conds, sampler):
    model = cw.make_model(world, "eps")
    src = world.latent(0)
    levels = [0.0, 0.25, 0.5, 0.75, 1.0] * 6 + [0.0, 1.0]
    cmap = column_ramp(levels)
    plain = dk(model, src, cmap, conds["graded"], conds["uncond"], sampler=sampler)
    frac = dk(model, src, cmap, conds["graded"], conds["uncond"], sampler=sampler, fractional=True)
    assert torch.equal(plain, frac)


@pytest.mark.parametrize("family", ["eps", "v", "flow"])
@pytest.mark.parametrize("mode", ["step", "denoise", "timestep"])
def test_fractional_keeps_map_zero_exact_and_map_one_equal_to_ksampler(comfy, cw, world, dk, conds, family, mode):
    import nodes

    model = cw.make_model(world, family)
    src = world.latent(0)
    for sampler in ("euler", "dpmpp_2m", "lcm"):
        zero = dk(model, src, uniform(0.0), conds["graded"], conds["uncond"], mode=mode, sampler=sampler, seed=5,
                  fractional=True)
        assert torch.equal(zero, src)
        one = dk(model, src, uniform(1.0), conds["graded"], conds["uncond"], mode=mode, sampler=sampler, seed=5,
                 fractional=True, cfg=2.0)
        (ref,) = nodes.KSampler().sample(model, 5, 4, 2.0, sampler, "normal", conds["graded"], conds["uncond"],
                                         {"samples": src})
        assert torch.equal(one, ref["samples"]), sampler


def test_fractional_split_advanced_equals_one_pass(comfy, cw, world, conds):
    model = cw.make_model(world, "eps")
    latent = {"samples": world.latent(0)}
    cmap = column_ramp([i / 31 for i in range(32)])

    def run(lat, add_noise, start, end, leftover):
        return comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=model, add_noise=add_noise, noise_seed=7,
                              steps=6, cfg=1.0, sampler_name="euler", scheduler="normal", positive=conds["graded"],
                              negative=conds["uncond"], latent_image=lat, start_at_step=start, end_at_step=end,
                              return_with_leftover_noise=leftover, change_map=cmap, mode="step", invert=False,
                              strength=1.0, softness=0.0, fractional=True, prefill="original", prefill_above=0.5)[0]

    one = run(latent, "enable", 0, 10000, "disable")
    second = run(run(latent, "enable", 0, 3, "enable"), "disable", 3, 10000, "disable")
    assert (second["samples"] - one["samples"]).abs().max().item() <= 1e-5


# -- room for new content: pre-fill ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def strong_object(world):
    """Scene 0's query with a strong foreign object painted over the region the query changes."""
    scene = world.scenes[0]
    src = scene.query.clone()
    src[:, scene.region] = torch.tensor([-2.5, 2.5, 2.5, 1.5]).view(4, 1)
    return src.unsqueeze(0), scene.region, world.latent(0, "query")


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_prefill_lets_the_querys_object_appear_at_lower_strength(comfy, cw, world, dk, conds, strong_object, family):
    """Distance to the query's object in the region, by map strength: with a pre-fill the object
    arrives at a lower strength than from the original's strong object; map-0 pixels stay exact."""
    model = cw.make_model(world, family)
    src, region, target = strong_object
    strengths = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    dist = {}
    for method in ("original", "fill", "latent nothing"):
        dist[method] = []
        for g in strengths:
            cmap = torch.zeros(1, 32, 32)
            cmap[:, region] = g
            cmap = cmap.repeat_interleave(8, 1).repeat_interleave(8, 2)
            out = dk(model, src, cmap, conds["graded"], conds["uncond"], steps=20, prefill=method, prefill_above=0.3)
            assert torch.equal(out[..., ~region], src[..., ~region]), f"{method}: map-0 pixels changed"
            dist[method].append(float((out[..., region] - target[..., region]).norm(dim=1).mean()))
    print(f"\n{family}: mean distance to the query's object in the region at strengths {strengths}:\n"
          + "\n".join(f"  {k:15s} {[round(v, 3) for v in d]}" for k, d in dist.items()))
    goal = dist["original"][-2]    # how close the original gets at 0.8
    needed = {k: next(g for g, v in zip(strengths, d) if v <= goal) for k, d in dist.items()}
    print(f"  strength needed to come as close as 'original' at 0.8: {needed}")
    for method in ("fill", "latent nothing"):
        assert all(a < b for a, b in zip(dist[method], dist["original"])), method
        assert needed[method] < needed["original"], method


def test_prefill_below_its_level_changes_nothing(comfy, cw, world, dk, conds, strong_object):
    model = cw.make_model(world, "eps")
    src, region, _ = strong_object
    cmap = torch.zeros(1, 32, 32)
    cmap[:, region] = 0.6
    below = dk(model, src, cmap, conds["graded"], conds["uncond"], steps=10, prefill="fill", prefill_above=0.6)
    plain = dk(model, src, cmap, conds["graded"], conds["uncond"], steps=10)
    assert torch.equal(below, plain)    # the level is not exceeded: nothing is pre-filled


def test_prefill_split_advanced_equals_one_pass(comfy, cw, world, conds, strong_object):
    model = cw.make_model(world, "eps")
    src, region, _ = strong_object
    cmap = torch.zeros(1, 32, 32)
    cmap[:, region] = 0.7
    for method in ("fill", "latent noise"):
        def run(lat, add_noise, start, end, leftover):
            return comfy.run_node("DDE_DifferentialKSamplerAdvanced", model=model, add_noise=add_noise, noise_seed=3,
                                  steps=10, cfg=1.0, sampler_name="euler", scheduler="normal", positive=conds["graded"],
                                  negative=conds["uncond"], latent_image=lat, start_at_step=start, end_at_step=end,
                                  return_with_leftover_noise=leftover, change_map=cmap, mode="step", invert=False,
                                  strength=1.0, softness=0.0, fractional=False, prefill=method, prefill_above=0.5)[0]

        one = run({"samples": src}, "enable", 0, 10000, "disable")
        second = run(run({"samples": src}, "enable", 0, 6, "enable"), "disable", 6, 10000, "disable")
        assert (second["samples"] - one["samples"]).abs().max().item() <= 1e-5, method
        assert torch.equal(one["samples"][..., ~region], src[..., ~region])


# -- change map from an edit -> composite ---------------------------------------------------------------

def test_change_map_from_edit_feeds_the_composite_pixel_exact(comfy):
    from dde_world.edits import synthetic_edit

    before, after, region = synthetic_edit(seed=3)
    cmap, mask, _ = comfy.run_node("DDE_ChangeMapFromEdit", before=before, after=after, color_match="affine",
                                noise_floor=6.0, full_change=15.0, grow=0, softness=0).args
    out = comfy.run_node("DDE_CompositeByChangeMap", original=before, edited=after, change_map=cmap, blend="map",
                         feather=0, invert=False)[0]
    keep = cmap[0] == 0
    assert keep[~region].float().mean() > 0.99
    assert torch.equal(out[0][keep], before[0][keep])
    assert torch.equal(out[0][mask[0] > 0.5][cmap[0][mask[0] > 0.5] == 1.0],
                       after[0][mask[0] > 0.5][cmap[0][mask[0] > 0.5] == 1.0])
    # the A1111 threshold on top: the editor's global shift (a few % per pixel) snaps back everywhere
    snapped = comfy.run_node("DDE_CompositeByChangeMap", original=before, edited=after,
                             change_map=torch.ones_like(cmap), blend="map", feather=0, invert=False,
                             difference_threshold=0.15, difference_contrast=2.0, mask_influence=0.0)[0]
    d = (after - before).norm(dim=-1)
    assert torch.equal(snapped[0][d[0] <= 0.15], before[0][d[0] <= 0.15])
    assert (snapped[0][region] - after[0][region]).abs().max() < 0.02
