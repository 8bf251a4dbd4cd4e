"""Reliability over HTTP: a battery of bad and edge prompts, interrupts, back-to-back load.

Every case ends in its documented outcome — ComfyUI's own validation refusing the prompt (400,
naming the input), the node's error naming node and input, or a documented result checked by
value — the server stays up, and a good prompt gives the same output before and after.
"""

from __future__ import annotations

import json
import time

import pytest

from dde_world.server import report


class G:
    """A small prompt builder: ``add`` returns the node id; ``[id, k]`` links output k."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def add(self, class_type: str, **inputs) -> str:
        nid = str(len(self.nodes) + 1)
        self.nodes[nid] = {"class_type": class_type, "inputs": inputs}
        return nid

    def base(self, family="eps", scene=0, batch=1, latent=None):
        self.model = [self.add("DDETest_AnalyticModel", family=family), 0]
        self.pos = [self.add("DDETest_AnalyticCondition", scene=scene, role="graded"), 0]
        self.query = [self.add("DDETest_AnalyticCondition", scene=scene, role="query"), 0]
        self.ref = [self.add("DDETest_AnalyticCondition", scene=scene, role="reference"), 0]
        self.neg = [self.add("DDETest_AnalyticCondition", scene=scene, role="unconditional"), 0]
        self.latent = latent or [self.add("DDETest_AnalyticLatent", scene=scene, role="reference", batch_size=batch), 0]
        return self

    def tensor(self, shape: str, fill: str, out: int = 0):
        return [self.add("DDETest_MakeTensor", shape=shape, fill=fill, seed=0), out]

    def dk(self, change_map, steps=8, denoise=1.0, mode="step", invert=False, strength=1.0, softness=0.0, latent=None,
           sampler="euler", seed=0):
        return [self.add("DDE_DifferentialKSampler", model=self.model, seed=seed, steps=steps, cfg=1.0, sampler_name=sampler,
                         scheduler="normal", positive=self.pos, negative=self.neg, latent_image=latent or self.latent,
                         denoise=denoise, change_map=change_map, mode=mode, invert=invert, strength=strength,
                         softness=softness), 0]

    def report(self, samples=None, mask=None, image=None, compare_to="reference"):
        extra = {k: v for k, v in (("samples", samples), ("mask", mask), ("image", image)) if v is not None}
        return self.add("DDETest_LatentReport", scene=0, compare_to=compare_to, **extra)


def run_case(server, g: G):
    """(kind, payload): ("refused", node_errors) | ("error", exception message) | ("ok", history)."""
    status, body = server.queue(g.nodes)
    if status != 200:
        return "refused", body
    history = server.wait(body["prompt_id"], timeout=120)
    if history["status"]["status_str"] == "success":
        return "ok", history
    messages = [m for m in history["status"]["messages"] if m[0] == "execution_error"]
    assert messages, history["status"]
    return "error", messages[0][1]["exception_message"]


def expect_error(server, g: G, *fragments):
    kind, payload = run_case(server, g)
    assert kind == "error", (kind, str(payload)[:500])
    for f in fragments:
        assert f in payload, payload


def expect_refused(server, g: G, input_name: str):
    kind, payload = run_case(server, g)
    assert kind == "refused", kind
    names = [e.get("extra_info", {}).get("input_name") for err in payload["node_errors"].values() for e in err["errors"]]
    assert input_name in names, json.dumps(payload)[:800]


def expect_ok(server, g: G, node: str) -> dict:
    kind, payload = run_case(server, g)
    assert kind == "ok", (kind, str(payload)[:800])
    return report(payload, node)


# -- the battery: (name, builder) -> each builder returns a checker run against the server -----------

def _dk_map(shape, fill, **kw):
    g = G().base()
    return g, g.report(g.dk(g.tensor(shape, fill), **kw))


CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@case
def dk_map_batch_mismatch(server):
    g = G().base(batch=3)
    g.report(g.dk(g.tensor("2,64,64", "half")))
    expect_error(server, g, "Differential KSampler: input 'change_map'", "1 map or 3 maps")


@case
def dk_map_nan(server):
    g, _ = _dk_map("1,64,64", "nan")
    expect_error(server, g, "Differential KSampler: input 'change_map'", "NaN")


@case
def dk_map_inf(server):
    g, _ = _dk_map("1,64,64", "inf")
    expect_error(server, g, "Differential KSampler: input 'change_map'", "infinite")


@case
def dk_map_above_one_is_clamped_to_one(server):
    g, r1 = _dk_map("1,64,64", "big")
    h, r2 = _dk_map("1,64,64", "ones")
    assert expect_ok(server, g, r1)["values"] == expect_ok(server, h, r2)["values"]


@case
def dk_map_negative_is_clamped_to_zero(server):
    g, r = _dk_map("1,64,64", "negative")
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def dk_map_zero_is_bit_exact(server):
    g, r = _dk_map("1,256,256", "zeros")
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def dk_map_one_pixel_broadcasts(server):
    g, r = _dk_map("1,1,1", "half")
    rep = expect_ok(server, g, r)
    assert rep["finite"] and rep["max_abs_diff"] > 0


@case
def dk_map_with_channel_axis_is_accepted(server):
    g, r = _dk_map("1,1,64,64", "ones")
    h, r2 = _dk_map("1,64,64", "ones")
    assert expect_ok(server, g, r)["values"] == expect_ok(server, h, r2)["values"]


@case
def dk_map_with_three_channels_is_refused(server):
    g, _ = _dk_map("1,3,64,64", "ones")
    expect_error(server, g, "Differential KSampler: input 'change_map'", "shape")


@case
def dk_map_2d_is_one_map(server):
    g, r = _dk_map("64,64", "zeros")
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def dk_map_large_and_odd_aspect(server):
    g, r = _dk_map("1,1000,333", "ramp")
    rep = expect_ok(server, g, r)
    assert rep["finite"] and rep["shape"] == [1, 4, 32, 32]


@case
def dk_latent_nan(server):
    g = G().base(latent=None)
    g.latent = g.tensor("1,4,32,32", "nan", out=1)
    g.report(g.dk(g.tensor("1,64,64", "ones")))
    expect_error(server, g, "Differential KSampler: input 'latent_image'", "finite")


@case
def dk_latent_3d(server):
    g = G().base()
    g.latent = g.tensor("4,32,32", "zeros", out=1)
    g.report(g.dk(g.tensor("1,64,64", "ones")))
    expect_error(server, g, "Differential KSampler: input 'latent_image'")


@case
def dk_video_latent_for_an_image_model(server):
    g = G().base()
    g.latent = g.tensor("1,4,5,32,32", "zeros", out=1)
    g.report(g.dk(g.tensor("3,64,64", "ones")))
    expect_error(server, g, "Differential KSampler: input 'latent_image'", "an image LATENT")


@case
def dk_steps_zero_is_refused(server):
    g, _ = _dk_map("1,64,64", "ones", steps=0)
    expect_refused(server, g, "steps")


@case
def dk_steps_one(server):
    g, r = _dk_map("1,64,64", "ones", steps=1)
    assert expect_ok(server, g, r)["finite"]


@case
def dk_denoise_zero_returns_the_input(server):
    g, r = _dk_map("1,64,64", "ones", denoise=0.0)
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def dk_unknown_mode_is_refused(server):
    g, _ = _dk_map("1,64,64", "ones", mode="fastest")
    expect_refused(server, g, "mode")


@case
def dk_missing_positive_is_refused(server):
    g, r = _dk_map("1,64,64", "ones")
    dk_id = g.nodes[r]["inputs"]["samples"][0]
    del g.nodes[dk_id]["inputs"]["positive"]
    expect_refused(server, g, "positive")


@case
def dk_soft_and_weak(server):
    g, r = _dk_map("1,64,64", "ramp", strength=0.0, softness=1.0)
    assert expect_ok(server, g, r)["finite"]


@case
def dk_invert_zero_map_is_full_change(server):
    g, r1 = _dk_map("1,64,64", "zeros", invert=True)
    h, r2 = _dk_map("1,64,64", "ones")
    assert expect_ok(server, g, r1)["values"] == expect_ok(server, h, r2)["values"]


def _adv(g, cmap, latent, add_noise, start, end, leftover):
    return [g.add("DDE_DifferentialKSamplerAdvanced", model=g.model, add_noise=add_noise, noise_seed=1, steps=10, cfg=1.0,
                  sampler_name="euler", scheduler="normal", positive=g.pos, negative=g.neg, latent_image=latent,
                  start_at_step=start, end_at_step=end, return_with_leftover_noise=leftover, change_map=cmap,
                  mode="denoise", invert=False, strength=1.0, softness=0.0), 0]


@case
def adv_start_after_end_returns_the_input(server):
    g = G().base()
    r = g.report(_adv(g, g.tensor("1,64,64", "ones"), g.latent, "enable", 7, 3, "disable"))
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def adv_split_equals_one_pass(server):
    g = G().base()
    cmap = g.tensor("1,256,256", "ramp")
    one = g.report(_adv(g, cmap, g.latent, "enable", 0, 10000, "disable"))
    part = _adv(g, cmap, g.latent, "enable", 0, 4, "enable")
    two = g.report(_adv(g, cmap, part, "disable", 4, 10000, "disable"))
    kind, history = run_case(server, g)
    assert kind == "ok"
    a, b = report(history, one)["values"], report(history, two)["values"]
    assert max(abs(x - y) for x, y in zip(a, b)) <= 1e-5


@case
def adv_continue_without_carry(server):
    g = G().base()
    r = g.report(_adv(g, g.tensor("1,64,64", "half"), g.latent, "disable", 0, 10000, "disable"))
    assert expect_ok(server, g, r)["finite"]


def _patched(g, cmap):
    return [g.add("DDE_ApplyChangeMap", model=g.model, change_map=cmap, mode="step", invert=False, strength=1.0,
                  softness=0.0, scheduler="normal"), 0]


def _ksampler(g, model, latent, denoise=1.0):
    return [g.add("KSampler", model=model, seed=0, steps=8, cfg=1.0, sampler_name="euler", scheduler="normal",
                  positive=g.pos, negative=g.neg, latent_image=latent, denoise=denoise), 0]


@case
def patch_zero_map_with_stock_ksampler_is_bit_exact(server):
    g = G().base()
    r = g.report(_ksampler(g, _patched(g, g.tensor("1,64,64", "zeros")), g.latent))
    assert expect_ok(server, g, r)["max_abs_diff"] == 0.0


@case
def patch_with_partial_denoise(server):
    g = G().base()
    r = g.report(_ksampler(g, _patched(g, g.tensor("1,64,64", "ramp")), g.latent, denoise=0.5))
    assert expect_ok(server, g, r)["finite"]


@case
def patch_map_batch_mismatch_at_sampling(server):
    g = G().base(batch=3)
    g.report(_ksampler(g, _patched(g, g.tensor("2,64,64", "half")), g.latent))
    expect_error(server, g, "Apply Change Map to Model: input 'change_map'", "1 map or 3 maps")


def _dmask(g, n=10, strength=0.5, batch_size=0, latent=None, image=None, reference=True):
    extra = {"reference": g.ref} if reference else {}
    if image is not None:
        extra["image"] = image
    return g.add("DDE_DiffEditMask", model=g.model, query=g.query, latent=latent or g.latent, strength=strength, n=n, seed=0,
                 cfg=1.0, threshold_method="rescale", threshold=0.5, clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0,
                 batch_size=batch_size, **extra)


@case
def mask_n_zero_is_refused(server):
    g = G().base()
    g.report(mask=[_dmask(g, n=0), 1])
    expect_refused(server, g, "n")


@case
def mask_large_n_is_chunked(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(mask=[_dmask(g, n=400), 1]))
    assert rep["mask"]["shape"] == [1, 256, 256] and rep["mask"]["max"] == 1.0


@case
def mask_batch_one_evaluations(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(mask=[_dmask(g, n=20, batch_size=1), 1]))
    assert rep["mask"]["max"] == 1.0


@case
def mask_strength_zero_is_refused(server):
    g = G().base()
    g.report(mask=[_dmask(g, strength=0.0), 1])
    expect_refused(server, g, "strength")


@case
def mask_latent_nan(server):
    g = G().base()
    g.report(mask=[_dmask(g, latent=g.tensor("1,4,32,32", "nan", out=1)), 1])
    expect_error(server, g, "DiffEdit Mask: input 'latent'", "finite")


@case
def mask_video_latent(server):
    g = G().base()
    g.report(mask=[_dmask(g, latent=g.tensor("1,4,3,32,32", "zeros", out=1)), 1])
    expect_error(server, g, "DiffEdit Mask: input 'latent'")


@case
def mask_without_reference_is_unconditional(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(mask=[_dmask(g, reference=False), 1]))
    assert rep["mask"]["max"] == 1.0 and rep["mask"]["min"] == 0.0


@case
def mask_image_sets_size(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(mask=[_dmask(g, image=g.tensor("1,96,80,3", "half", out=2)), 1]))
    assert rep["mask"]["shape"] == [1, 96, 80]


@case
def mask_image_batch_mismatch(server):
    g = G().base(batch=3)
    g.report(mask=[_dmask(g, image=g.tensor("2,256,256,3", "half", out=2)), 1])
    expect_error(server, g, "DiffEdit Mask: input 'image'")


def _dedit(g, mask, ratio=0.8, family_latent=None):
    return [g.add("DDE_DiffEditEdit", model=g.model, query=g.query, latent=family_latent or g.latent, mask=mask, steps=8,
                  encode_ratio=ratio, cfg=2.0, scheduler="normal", refine=1, invert=False, reference=g.ref), 0]


@case
def edit_zero_mask_is_bit_exact(server):
    g = G().base()
    assert expect_ok(server, g, g.report(_dedit(g, g.tensor("1,256,256", "zeros"))))["max_abs_diff"] == 0.0


@case
def edit_mask_batch_mismatch(server):
    g = G().base(batch=3)
    g.report(_dedit(g, g.tensor("2,256,256", "ones")))
    expect_error(server, g, "DiffEdit Edit: input 'mask'")


@case
def edit_mask_nan(server):
    g = G().base()
    g.report(_dedit(g, g.tensor("1,256,256", "nan")))
    expect_error(server, g, "DiffEdit Edit: input 'mask'", "NaN")


@case
def edit_full_ratio_on_flow(server):
    g = G().base(family="flow")
    assert expect_ok(server, g, g.report(_dedit(g, g.tensor("1,256,256", "ones"), ratio=1.0)))["finite"]


@case
def quantize_one_level_is_refused(server):
    g = G()
    g.report(mask=[g.add("DDE_QuantizeChangeMap", change_map=g.tensor("1,8,8", "ramp"), levels=1), 0])
    expect_refused(server, g, "levels")


@case
def combine_batch_mismatch(server):
    g = G()
    g.report(mask=[g.add("DDE_CombineChangeMaps", map_a=g.tensor("2,8,8", "ramp"), map_b=g.tensor("3,8,8", "half"),
                         operation="max", factor=0.5), 0])
    expect_error(server, g, "Combine Change Maps: input")


@case
def falloff_outer_below_inner(server):
    g = G()
    g.report(mask=[g.add("DDE_MaskDistanceFalloff", mask=g.tensor("1,16,16", "half"), inner=8.0, outer=2.0, threshold=0.5,
                         curve="linear", gamma=1.0, invert=False), 0])
    expect_error(server, g, "Distance Falloff Change Map: input 'outer'")


@case
def alpha_of_an_rgb_image(server):
    g = G()
    g.report(mask=[g.add("DDE_ImageChannelMap", image=g.tensor("1,8,8,3", "half", out=2), channel="alpha", invert=False), 0])
    expect_error(server, g, "Change Map from Image: input 'image'", "alpha")


@case
def one_pixel_gradient(server):
    g = G()
    node = g.add("DDE_LinearGradientMap", width=1, height=1, batch_size=1, angle=0.0, offset=0.0, curve="linear", gamma=1.0,
                 invert=False)
    rep = expect_ok(server, g, g.report(mask=[node, 0]))
    assert rep["mask"]["shape"] == [1, 1, 1] and rep["mask"]["values"] == [0.5]


def _fan(g, strengths, latent=None):
    vae = [g.add("DDETest_AnalyticVAE"), 0]
    return g.add("DDE_StrengthFan", model=g.model, seed=0, steps=4, sampler_name="euler", scheduler="normal", cfg=1.0,
                 positive=g.pos, negative=g.neg, latent_image=latent or g.latent, vae=vae, strengths=strengths, mode="step",
                 layout="grid", columns=0)


@case
def fan_garbage_strengths(server):
    g = G().base()
    g.report(image=[_fan(g, "abc"), 0])
    expect_error(server, g, "Strength Fan: input 'strengths'")


@case
def fan_empty_strengths(server):
    g = G().base()
    g.report(image=[_fan(g, ""), 0])
    expect_error(server, g, "Strength Fan: input 'strengths'")


@case
def fan_batch_latent(server):
    g = G().base(batch=2)
    g.report(image=[_fan(g, "0, 1"), 0])
    expect_error(server, g, "Strength Fan: input 'latent_image'", "batch 1")


@case
def fan_one_strength(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(samples=[_fan(g, "1"), 2]))
    assert rep["shape"] == [1, 4, 32, 32]


def _preview(g, denoise=1.0, steps=10):
    return g.add("DDE_SchedulePreview", model=g.model, change_map=g.tensor("1,64,64", "ramp"), steps=steps,
                 sampler_name="euler", scheduler="normal", denoise=denoise, mode="denoise", invert=False)


@case
def preview_denoise_zero_changes_nothing(server):
    g = G().base()
    p = _preview(g, denoise=0.0)
    rep = expect_ok(server, g, g.report(mask=[p, 1]))
    assert rep["mask"]["max"] == 0.0 and rep["mask"]["shape"] == [1, 8, 8]


@case
def preview_one_step(server):
    g = G().base()
    rep = expect_ok(server, g, g.report(mask=[_preview(g, steps=1), 1]))
    assert set(rep["mask"]["values"]) <= {0.0, 1.0}


@case
def composite_size_mismatch(server):
    g = G()
    g.report(image=[g.add("DDE_CompositeByChangeMap", original=g.tensor("1,64,64,3", "half", out=2),
                          edited=g.tensor("1,32,32,3", "half", out=2), change_map=g.tensor("1,8,8", "ones"), blend="map",
                          feather=0, invert=False), 0])
    expect_error(server, g, "Composite Original by Change Map: input 'edited'")


@case
def composite_nan_image(server):
    g = G()
    g.report(image=[g.add("DDE_CompositeByChangeMap", original=g.tensor("1,64,64,3", "nan", out=2),
                          edited=g.tensor("1,64,64,3", "half", out=2), change_map=g.tensor("1,8,8", "ones"), blend="map",
                          feather=0, invert=False), 0])
    expect_error(server, g, "Composite Original by Change Map: input 'original'")


@case
def metrics_size_mismatch(server):
    g = G()
    g.report(mask=[g.add("DDE_ChangeMapAdherence", original=g.tensor("1,64,64,3", "half", out=2),
                         result=g.tensor("1,48,64,3", "half", out=2), change_map=g.tensor("1,8,8", "ramp"), smooth=0,
                         invert=False, calibration=""), 8])
    expect_error(server, g, "Change Map Adherence: input 'result'")


@case
def metrics_garbage_calibration(server):
    g = G()
    g.report(mask=[g.add("DDE_ChangeMapAdherence", original=g.tensor("1,64,64,3", "half", out=2),
                         result=g.tensor("1,64,64,3", "random", out=2), change_map=g.tensor("1,8,8", "ramp"), smooth=0,
                         invert=False, calibration="fast please"), 8])
    expect_error(server, g, "Change Map Adherence: input 'calibration'")


# -- limits by design, grey pictures, latents' noise masks and channels -----------------------------------

def _timed_ok(server, g: G, node: str, within: float) -> dict:
    start = time.time()
    rep = expect_ok(server, g, node)
    took = time.time() - start
    assert took < within, f"took {took:.1f} s"
    return rep


@case
def preview_of_a_narrow_map_is_capped(server):
    g = G().base()
    narrow = [g.add("DDE_LinearGradientMap", width=8, height=2048, batch_size=1, angle=90.0, offset=0.0, curve="linear",
                    gamma=1.0, invert=False), 0]
    p = g.add("DDE_SchedulePreview", model=g.model, change_map=narrow, steps=10, sampler_name="euler",
              scheduler="normal", denoise=1.0, mode="step", invert=False)
    rep = expect_ok(server, g, g.report(image=[p, 0], mask=[p, 1]))
    assert rep["image"]["shape"][0] == 1 and rep["image"]["shape"][1] <= 2048 + 400   # was 65,616 x 640
    assert rep["image"]["shape"][2] == 516 and rep["mask"]["shape"] == [1, 256, 1]


@case
def preview_plans_10000_denoise_steps_of_a_random_map_quickly(server):
    g = G().base()
    p = g.add("DDE_SchedulePreview", model=g.model, change_map=g.tensor("1,64,128", "random"), steps=10000,
              sampler_name="euler", scheduler="normal", denoise=1.0, mode="denoise", invert=False, latent_image=g.latent)
    rep = _timed_ok(server, g, g.report(mask=[p, 1]), within=30.0)   # 172 s before, almost all of it planning
    assert rep["mask"]["shape"] == [1, 32, 32] and 0.0 < rep["mask"]["mean"] < 1.0


@case
def mask_grow_256_is_quick(server):
    g = G().base()
    m = _dmask(g, n=1, image=g.tensor("1,1024,1024,3", "half", out=2))
    g.nodes[m]["inputs"]["grow"] = 256
    rep = _timed_ok(server, g, g.report(mask=[m, 1]), within=60.0)   # about an hour before (H W 513^2)
    assert rep["mask"]["shape"] == [1, 1024, 1024] and rep["mask"]["max"] == 1.0


@case
def edit_map_grow_256_is_quick(server):
    g = G()
    after = [g.add("DDE_LinearGradientMap", width=1024, height=1024, batch_size=1, angle=0.0, offset=0.0,
                   curve="linear", gamma=1.0, invert=False), 0]
    e = g.add("DDE_ChangeMapFromEdit", before=g.tensor("1,1024,1024,3", "zeros", out=2),
              after=[g.add("MaskToImage", mask=after), 0], color_match="none", noise_floor=6.0, full_change=15.0,
              grow=256, softness=256)
    rep = _timed_ok(server, g, g.report(mask=[e, 1]), within=60.0)
    assert rep["mask"]["shape"] == [1, 1024, 1024] and rep["mask"]["max"] == 1.0


@case
def falloff_outer_4096_is_quick(server):
    g = G()
    f = g.add("DDE_MaskDistanceFalloff", mask=g.tensor("1,1024,1024", "zeros"), inner=0.0, outer=4096.0, threshold=0.5,
              curve="linear", gamma=1.0, invert=False)
    rep = _timed_ok(server, g, g.report(mask=[f, 0]), within=60.0)   # an empty mask: 0 everywhere
    assert rep["mask"]["max"] == 0.0


@case
def grey_picture_in_every_picture_node(server):
    g = G().base()
    grey = g.tensor("1,256,256,1", "random", out=2)
    m = _dmask(g, n=2, image=grey)
    e = g.add("DDE_ChangeMapFromEdit", before=grey, after=g.tensor("1,256,256,1", "half", out=2), color_match="affine",
              noise_floor=6.0, full_change=15.0, grow=2, softness=0)
    a = g.add("DDE_ChangeMapAdherence", original=grey, result=g.tensor("1,256,256,1", "half", out=2),
              change_map=g.tensor("1,32,32", "ramp"), smooth=0, invert=False, calibration="")
    g.report(mask=[m, 1], image=[m, 2])
    g.report(mask=[e, 0])
    rep = expect_ok(server, g, g.report(mask=[a, 8]))
    assert rep["mask"]["shape"] == [1, 32, 32]


@case
def two_channel_picture_is_an_error_naming_the_input(server):
    g = G().base()
    g.report(mask=[_dmask(g, n=2, image=g.tensor("1,256,256,2", "half", out=2)), 1])
    expect_error(server, g, "DiffEdit Mask: input 'image' expected an IMAGE with 1 (grey), 3 (RGB) or 4 (RGBA) "
                            "channels, got 2 channels")


@case
def dk_nan_noise_mask(server):
    g = G().base()
    g.latent = [g.add("SetLatentNoiseMask", samples=g.latent, mask=g.tensor("1,32,32", "nan")), 0]
    g.report(g.dk(g.tensor("1,64,64", "ones")))
    expect_error(server, g, "Differential KSampler: input 'latent_image' expected a noise_mask of finite values")


@case
def dk_latent_of_the_wrong_channel_count(server):
    g = G().base()
    g.latent = g.tensor("1,16,32,32", "random", out=1)
    g.report(g.dk(g.tensor("1,64,64", "ones")))
    expect_error(server, g, "Differential KSampler: input 'latent_image' expected an image latent of this model "
                            "(4 channels, 4-D), got shape (1, 16, 32, 32)")


@case
def map_larger_than_the_cap_is_refused_before_allocating(server):
    g = G()
    g.report(mask=[g.add("DDE_LinearGradientMap", width=16384, height=16384, batch_size=4096, angle=0.0, offset=0.0,
                         curve="linear", gamma=1.0, invert=False), 0])
    expect_error(server, g, "Linear Gradient Change Map: input 'batch_size' expected width x height x batch_size at "
                            "most 268,435,456 pixels", "got 16384 x 16384 x 4096 = 1,099,511,627,776 pixels")


@case
def edit_two_masks_for_one_latent(server):
    g = G().base()
    g.report(_dedit(g, g.tensor("2,256,256", "ones")))
    expect_error(server, g, "DiffEdit Edit: input 'mask' expected 1 map (the latent batch holds one image), got 2 maps")


@case
def metrics_deeply_nested_calibration(server):
    g = G()
    g.report(mask=[g.add("DDE_ChangeMapAdherence", original=g.tensor("1,64,64,3", "half", out=2),
                         result=g.tensor("1,64,64,3", "random", out=2), change_map=g.tensor("1,8,8", "ramp"), smooth=0,
                         invert=False, calibration="[" * 100000 + "]" * 100000), 8])
    expect_error(server, g, "Change Map Adherence: input 'calibration' expected JSON pairs", "nested too deeply")


@case
def mask_picture_of_another_aspect_says_it_is_stretched(server):
    g = G().base()
    m = _dmask(g, n=2, image=g.tensor("1,128,256,3", "random", out=2))
    g.report(mask=[m, 1])
    kind, history = run_case(server, g)
    assert kind == "ok", history
    lines = history["outputs"][m]["dde_messages"]
    assert [x for x in lines if x.startswith("image: the picture is 256 x 128 px but the latent is 32 x 32 cells")]


def good_prompt():
    g = G().base()
    return g, g.report(g.dk(g.tensor("1,256,256", "ramp"), steps=12, sampler="dpmpp_2m", seed=5))


@pytest.fixture(scope="module")
def baseline(server):
    """A good prompt's values before the battery: the last test checks the server still gives them."""
    g, r = good_prompt()
    return expect_ok(server, g, r)["values"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_or_edge_prompt(server, baseline, name):
    CASES[name](server)
    assert server.alive(), f"the server died during {name}:\n{server.log()[-3000:]}"


def test_after_the_battery_a_good_prompt_gives_what_it_gave_before(server, baseline):
    g, r = good_prompt()
    assert expect_ok(server, g, r)["values"] == baseline


# -- interrupts -----------------------------------------------------------------------------------------

def _interrupt_when_running(server, g: G):
    status, body = server.queue(g.nodes)
    assert status == 200, body
    pid = body["prompt_id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        queue = server.get("/queue")
        if any(item[1] == pid for item in queue["queue_running"]):
            time.sleep(0.5)
            server.post("/interrupt", {})
            break
        time.sleep(0.05)
    return server.wait(pid, timeout=120)


@pytest.mark.parametrize("what", ["diffedit_mask", "differential_sampling"])
def test_interrupt_is_reported_and_the_next_prompt_succeeds(server, what):
    g = G().base()
    if what == "diffedit_mask":
        g.report(mask=[_dmask(g, n=20000, batch_size=2), 1])
    else:
        g.report(g.dk(g.tensor("1,256,256", "ramp"), steps=6000))
    history = _interrupt_when_running(server, g)
    kinds = [m[0] for m in history["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    g2, r2 = good_prompt()
    assert expect_ok(server, g2, r2)["finite"]


def _interrupt_during(server, g: G, node: str, after: float = 1.0) -> tuple[float, dict]:
    """Queue ``g``; ``after`` s into the execution of ``node`` (the websocket's ``executing`` message) post
    ``/interrupt``. Returns how long after that post ComfyUI reported the prompt interrupted (the message's own
    timestamp), and the message."""
    import asyncio
    import uuid

    import aiohttp

    async def go():
        client_id = uuid.uuid4().hex
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}") as ws:
                status, body = server.queue(g.nodes, client_id)
                assert status == 200, body
                pid, posted = body["prompt_id"], None
                deadline = time.time() + 300
                while time.time() < deadline:
                    msg = await ws.receive(timeout=60)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    d = data.get("data", {})
                    if d.get("prompt_id") != pid:
                        continue
                    if data["type"] == "executing" and d.get("node") == node and posted is None:
                        await asyncio.sleep(after)
                        posted = time.time()
                        server.post("/interrupt", {})
                    if data["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                        assert data["type"] == "execution_interrupted", data
                        assert posted is not None
                        return d["timestamp"] / 1000.0 - posted, d
                raise TimeoutError(pid)

    return asyncio.run(go())


def _stopped_within_a_second(server, g: G, node: str, node_type: str, after: float = 1.0):
    latency, message = _interrupt_during(server, g, node, after)
    print(f"{node_type}: interrupted {latency:.2f} s after /interrupt")
    assert message["node_type"] == node_type, message          # interrupted inside that node's own work
    assert latency < 1.0, f"{node_type} stopped {latency:.2f} s after /interrupt"
    g2, r2 = good_prompt()
    assert expect_ok(server, g2, r2)["finite"]                  # and the next prompt runs


def test_cancel_stops_a_distance_falloff_of_a_large_map_within_a_second(server):
    g = G()
    f = g.add("DDE_MaskDistanceFalloff", mask=g.tensor("1,2048,2048", "random"), inner=0.0, outer=4096.0,
              threshold=0.9995, curve="linear", gamma=1.0, invert=False)
    g.report(mask=[f, 0])
    _stopped_within_a_second(server, g, f, "DDE_MaskDistanceFalloff")


def test_cancel_stops_a_10000_step_denoise_mode_run_within_a_second(server):
    g = G().base()
    r = g.report(g.dk(g.tensor("1,64,128", "random"), steps=10000, mode="denoise"))
    dk = g.nodes[r]["inputs"]["samples"][0]
    _stopped_within_a_second(server, g, dk, "DDE_DifferentialKSampler")


def test_cancel_stops_a_schedule_preview_of_large_pictures_within_a_second(server):
    g = G().base()
    p = g.add("DDE_SchedulePreview", model=g.model, change_map=g.tensor("1,256,256", "random"), steps=10,
              sampler_name="euler", scheduler="normal", denoise=1.0, mode="step", invert=False,
              latent_image=g.tensor("6,4,256,256", "zeros", out=1))   # six pictures of 2048 x 2048 px panels
    g.report(mask=[p, 1])
    # the preview is capped (PREVIEW_MAX_PIXELS): its whole work takes about a second on a quiet machine, so Cancel
    # is pressed 0.1 s into it, and must still land inside the preview's own drawing
    _stopped_within_a_second(server, g, p, "DDE_SchedulePreview", after=0.1)


# -- load ------------------------------------------------------------------------------------------------

def _load_prompt(i: int):
    g = G().base(scene=i % 4)
    fills = ["ramp", "half", "random", "ones", "zeros"]
    cmap = [g.add("DDETest_MakeTensor", shape="1,256,256", fill=fills[i % 5], seed=i), 0]
    return g, g.report(g.dk(cmap, steps=6, seed=100 + i, sampler=["euler", "dpmpp_2m", "heun"][i % 3]))


def test_thirty_prompts_back_to_back_equal_each_prompt_alone(server):
    alone = []
    for i in range(30):
        g, r = _load_prompt(i)
        alone.append(expect_ok(server, g, r)["values"])
    queued = []
    for i in range(30):
        g, r = _load_prompt(i)
        status, body = server.queue(g.nodes)
        assert status == 200
        queued.append((body["prompt_id"], r))
    for i, (pid, r) in enumerate(queued):
        history = server.wait(pid, timeout=300)
        assert history["status"]["status_str"] == "success"
        assert report(history, r)["values"] == alone[i], f"prompt {i} differs from its run alone"
    assert server.alive()
