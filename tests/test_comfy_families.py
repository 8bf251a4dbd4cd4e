"""The family matrix: every pack node that takes a MODEL or a LATENT, on tiny random-weight models of every
ComfyUI family (``dde_world.families``: real architectures, channel counts, latent formats and
conditioning shapes, built through ``comfy.supported_models``).

Per family: map 0 is bit-exact in all three modes, through the Differential KSampler and through Apply
Change Map with KSampler and SamplerCustomAdvanced; map 1 equals KSampler bit-exactly; a half map keeps
its black half bit-exact; DiffEdit Mask gives per-frame masks and DiffEdit Edit keeps the outside of its
mask bit-exact; Strength Fan (panels 0 and 1 are the input and KSampler) and the schedule preview run.
Inpainting models are checked with ``InpaintModelConditioning`` in both ``noise_mask`` settings, and
the models that turn ``denoise_mask`` into per-token timesteps (LTXV, LTX-2, Wan 2.2, Cosmos) are checked for
what the model is told at every step. A family the running ComfyUI does not have is skipped, naming the version.
"""

from __future__ import annotations

import pytest
import torch

from dde_world import families as F

STEPS = 2
MODES = ("step", "denoise", "timestep")
#: (family, frames): every family once; video families also with 2 latent frames where cheap
CASES = [(n, F.specs()[n].frames) for n in F.NAMES] + [("wan21", 2), ("ltxv", 2)]
IDS = [f"{n}" if t == F.specs()[n].frames else f"{n}-T{t}" for n, t in CASES]
#: inpainting models (a masked-image concat): a Strength Fan panel of strength 1 shares its run with kept panels, so
#: they see the original in their concat channels where KSampler shows them a blank picture
MASK_CONCAT = ("sd15_inpaint", "flux_fill")
#: per-token timestep models whose tokens, in a masked run, are told the step's level one by one (LTXV): a Strength
#: Fan panel of strength 1 is KSampler within rounding there (|d| <= 1e-6 of the latent's scale)
PER_TOKEN_ROUNDING = ("ltxv",)


@pytest.fixture(scope="session")
def fam(comfy):
    """Tiny family models, built once per session (``F.build`` caches); a family this ComfyUI lacks is skipped."""
    def get(name, frames=None):
        why = F.unavailable(name)
        if why:
            pytest.skip(why)
        return F.build(name, frames)

    return get


@pytest.fixture(scope="session")
def vaes(comfy):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = F.vae(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def run(comfy):
    """The pack's nodes and ComfyUI's sampler nodes as plain functions."""
    import nodes


    class Run:
        @staticmethod
        def dk(f, cmap, mode="step", sampler="euler", cfg=2.0, seed=3, latent=None, pos=None, neg=None, strength=1.0,
               fractional=False, steps=STEPS):
            latent = latent if latent is not None else {"samples": f.latent}
            return comfy.run_node("DDE_DifferentialKSampler", model=f.model, seed=seed, steps=steps, cfg=cfg,
                                  sampler_name=sampler, scheduler="normal", positive=pos or f.positive,
                                  negative=neg or f.negative, latent_image=latent, denoise=1.0, change_map=cmap,
                                  mode=mode, invert=False, strength=strength, softness=0.0,
                                  fractional=fractional)[0]["samples"]

        @staticmethod
        def ksampler(model, f, sampler="euler", cfg=2.0, seed=3, latent=None, pos=None, neg=None, steps=STEPS):
            latent = latent if latent is not None else {"samples": f.latent}
            return nodes.KSampler().sample(model, seed, steps, cfg, sampler, "normal", pos or f.positive, neg or f.negative,
                                           latent)[0]["samples"]

        @staticmethod
        def patched(f, cmap, mode="step"):
            return comfy.run_node("DDE_ApplyChangeMap", model=f.model, change_map=cmap, mode=mode, invert=False,
                                  strength=1.0, softness=0.0, scheduler="normal")[0]

        @staticmethod
        def custom_advanced(model, f, cfg=2.0, seed=3):
            noise = comfy.run_node("RandomNoise", noise_seed=seed)[0]
            guider = comfy.run_node("CFGGuider", model=model, positive=f.positive, negative=f.negative, cfg=cfg)[0]
            sampler = comfy.run_node("KSamplerSelect", sampler_name="euler")[0]
            sigmas = comfy.run_node("BasicScheduler", model=model, scheduler="normal", steps=STEPS, denoise=1.0)[0]
            return comfy.run_node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                                  latent_image={"samples": f.latent})[0]["samples"]

    return Run


def _map(f, value):
    """A change map of the picture's size (the family's pixels per latent cell), one for every frame of a video."""
    h, w = f.latent.shape[-2:]
    return torch.full((1, f.ratio * h, f.ratio * w), float(value))


def _half(f):
    """Left half 0, right half 1 (whole latent cells)."""
    cmap = _map(f, 0.0)
    cmap[..., cmap.shape[-1] // 2:] = 1.0
    return cmap


# -- map 0, map 1, half map ------------------------------------------------------------------------

@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_map_zero_is_bit_exact_in_every_mode_and_path(fam, run, name, frames):
    f = fam(name, frames)
    zero = _map(f, 0.0)
    for mode in MODES:
        out = run.dk(f, zero, mode, cfg=1.0)
        assert torch.equal(out, f.latent), f"{name}: map 0 changed the latent ({mode} mode)"
    patched = run.patched(f, zero, "timestep")
    assert torch.equal(run.ksampler(patched, f, cfg=1.0), f.latent), f"{name}: Apply Change Map + KSampler"
    assert torch.equal(run.custom_advanced(patched, f, cfg=1.0), f.latent), f"{name}: + SamplerCustomAdvanced"


@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_map_one_is_ksampler_bit_exact(fam, run, name, frames):
    f = fam(name, frames)
    ref = run.ksampler(f.model, f)
    assert not torch.equal(ref, f.latent)
    out = run.dk(f, _map(f, 1.0), "step")
    assert torch.equal(out, ref), f"{name}: map 1 differs from KSampler by {(out - ref).abs().max():.3g}"
    patched = run.patched(f, _map(f, 1.0), "denoise")
    assert torch.equal(run.ksampler(patched, f), ref), f"{name}: Apply Change Map (map 1) + KSampler"


@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_half_map_keeps_its_black_half_and_changes_the_white_half(fam, run, name, frames):
    f = fam(name, frames)
    out = run.dk(f, _half(f), "denoise", cfg=1.0)
    w = f.latent.shape[-1] // 2
    assert torch.equal(out[..., :w], f.latent[..., :w])
    assert (out[..., w:] - f.latent[..., w:]).abs().amin(dim=-1).gt(0).all()


@pytest.mark.parametrize("name", ["z_image"])
def test_few_step_model_with_fractional_starts(fam, run, name):
    """Z-Image Turbo is a few-step model: with ``fractional`` on, map 0 stays bit-exact in every mode and map 1 is
    KSampler bit for bit; a map value between two step boundaries blends instead of rounding down to a step."""
    f = fam(name)
    for mode in MODES:
        assert torch.equal(run.dk(f, _map(f, 0.0), mode, cfg=1.0, fractional=True, steps=4), f.latent), mode
    ref = run.ksampler(f.model, f, steps=4)
    assert torch.equal(run.dk(f, _map(f, 1.0), "step", fractional=True, steps=4), ref)
    shade = {v: run.dk(f, _map(f, v), "step", fractional=True, steps=4) for v in (0.5, 0.625, 0.75)}
    assert torch.equal(run.dk(f, _map(f, 0.625), "step", steps=4), shade[0.5])    # off: 0.625 rounds down to 2 steps
    assert not torch.equal(shade[0.625], shade[0.5]) and not torch.equal(shade[0.625], shade[0.75])


# -- inpainting models: InpaintModelConditioning in both noise_mask settings ---------------------------

@pytest.fixture(scope="module")
def inpaint_inputs(comfy, fam, vaes):
    import nodes

    def get(name, noise_mask):
        f = fam(name)
        h, w = f.latent.shape[-2:]
        pixels = torch.rand(1, 8 * h, 8 * w, 3, generator=torch.Generator().manual_seed(5))
        mask = torch.zeros(1, 8 * h, 8 * w)
        mask[:, 2 * 8:6 * 8, 3 * 8:7 * 8] = 1.0   # whole latent cells
        pos, neg, latent = nodes.InpaintModelConditioning().encode(f.positive, f.negative, pixels, vaes(name), mask,
                                                                   noise_mask)
        return f, pos, neg, latent, mask

    return get


@pytest.mark.parametrize("name", ["sd15_inpaint", "flux_fill"])
@pytest.mark.parametrize("noise_mask", [False, True])
@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_inpaint_conditioning_map_one_is_ksampler(run, inpaint_inputs, name, noise_mask, sampler):
    """Map 1 = KSampler. With noise_mask the latent's mask multiplies the map: outside it the pack returns
    the input bit-exact, where KSampler's last step reproduces it only up to rounding (|d| <= 1e-5 of it)."""
    f, pos, neg, latent, mask = inpaint_inputs(name, noise_mask)
    ref = run.ksampler(f.model, f, sampler=sampler, latent=latent, pos=pos, neg=neg)
    inside = torch.nn.functional.interpolate(mask[:, None], size=f.latent.shape[-2:], mode="area") > 0.5
    inside = inside.expand_as(ref) if noise_mask else torch.ones_like(ref, dtype=torch.bool)
    src = latent["samples"]
    mode = "step" if sampler == "euler" else "denoise"
    out = run.dk(f, _map(f, 1.0), mode, sampler=sampler, latent=latent, pos=pos, neg=neg)
    assert torch.equal(out[inside], ref[inside]), f"{name} noise_mask={noise_mask}: map 1 differs by {(out - ref).abs().max():.3g}"
    assert torch.equal(out[~inside], src[~inside])
    assert torch.allclose(ref[~inside], src[~inside], rtol=0, atol=1e-5 * float(src.abs().max()))


def _recording(model):
    """A clone whose diffusion model records (input, timestep) of every call (DIFFUSION_MODEL wrapper)."""
    import comfy.patcher_extension as pe

    rec = []
    m = model.clone()

    def wrapper(executor, x, timesteps, *args, **kwargs):
        told = timesteps.detach().clone()
        if isinstance(kwargs.get("a_timestep"), torch.Tensor):   # LTX-2: told (video, audio); the audio one here
            told = (told, kwargs["a_timestep"].detach().clone())
        seen = [t.detach().clone() for t in x] if isinstance(x, list) else x.detach().clone()   # LTX-2: [video]
        rec.append((seen, told))
        return executor(x, timesteps, *args, **kwargs)

    m.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, "test_record", wrapper)
    return m, rec


def test_inpaint_concat_mask_is_the_users_mask_times_the_step_mask(comfy, run, inpaint_inputs):
    """noise_mask=False: the model's mask channel = the user's inpaint mask x the current step mask."""
    f, pos, neg, latent, mask = inpaint_inputs("sd15_inpaint", False)
    model, rec = _recording(f.model)
    cmap = _map(f, 0.5)
    cmap[..., :, : cmap.shape[-1] // 2] = 1.0        # left: free from step 0; right: from step ceil(2 * 0.5) = 1
    comfy.run_node("DDE_DifferentialKSampler", model=model, seed=3, steps=STEPS, cfg=2.0, sampler_name="euler",
                   scheduler="normal", positive=pos, negative=neg, latent_image=latent, denoise=1.0, change_map=cmap,
                   mode="step", invert=False, strength=1.0, softness=0.0)
    user = torch.nn.functional.interpolate(mask[:, None], size=f.latent.shape[-2:], mode="area")[:, 0].round()
    w = f.latent.shape[-1] // 2
    assert len(rec) == STEPS
    for i, (x, _) in enumerate(rec):
        step = torch.ones_like(user)
        if i < 1:
            step[..., w:] = 0.0
        seen = x[:, 4]                                # SD1.5 inpaint concat: latent(4), mask(1), masked image(4)
        assert torch.equal(seen, (user * step).expand_as(seen)), f"step {i}"


# -- per-token timestep models: what the model is told follows the step mask --------------------------

@pytest.mark.parametrize("name", ["ltxv", "ltxav", "wan22", "cosmos_predict2"])
def test_per_token_timesteps_follow_the_step_mask(comfy, fam, name):
    """LTX-2 is told a (video, audio) pair: the video's follows the step mask, its (empty) audio's the level."""
    f = fam(name, 2 if name in ("ltxv", "ltxav") else 1)
    model, rec = _recording(f.model)
    cmap = _map(f, 0.5)
    cmap[..., : cmap.shape[-1] // 2] = 1.0           # left free from step 0, right from step 2 of 4
    steps = 4
    comfy.run_node("DDE_DifferentialKSampler", model=model, seed=3, steps=steps, cfg=1.0, sampler_name="euler",
                   scheduler="normal", positive=f.positive, negative=f.negative, latent_image={"samples": f.latent},
                   denoise=1.0, change_map=cmap, mode="step", invert=False, strength=1.0, softness=0.0)
    base = f.model.model
    ms = base.model_sampling
    import comfy.samplers as cs

    sigmas = cs.KSampler(f.model, steps, "cpu", "euler", "normal", 1.0).sigmas
    w = f.latent.shape[-1] // 2
    assert len(rec) == steps
    for i, (x, told) in enumerate(rec):
        step = torch.ones((1, 1, *f.latent.shape[2:]))
        if i < 2:
            step[..., w:] = 0.0
        t = ms.timestep(sigmas[i:i + 1]).float()
        expected = base.process_timestep(t, x=x, denoise_mask=step)
        if isinstance(told, tuple):
            assert len(told) == len(expected) and all(torch.equal(a, b.to(a.dtype)) for a, b in zip(told, expected)), \
                f"{name} step {i}"
        else:
            assert torch.equal(told, expected.to(told.dtype)), f"{name} step {i}"


# -- DiffEdit, Strength Fan, schedule preview ----------------------------------------------------------

@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_diffedit_mask_and_edit(comfy, fam, name, frames):
    f = fam(name, frames)
    b, t = f.latent.shape[0], (f.latent.shape[2] if f.latent.ndim == 5 else 1)
    h, w = f.latent.shape[-2:]
    heat, mask, shown, _ = comfy.run_node("DDE_DiffEditMask", model=f.model, query=f.positive,
                                          latent={"samples": f.latent}, n=2, reference=f.negative)
    size = (b * t, f.ratio * h, f.ratio * w)
    assert heat.shape == mask.shape == size and shown.shape == (*size, 3)
    assert torch.isfinite(heat).all() and set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    # the rescaled heat of each picture (all its frames together) spans 0..1, so its mask holds both kinds of pixel
    per_picture = heat.reshape(b, -1)
    assert torch.equal(per_picture.amin(1), torch.zeros(b)) and torch.equal(per_picture.amax(1), torch.ones(b))
    assert torch.equal(mask.reshape(b, -1).amax(1), torch.ones(b)) and torch.equal(mask.reshape(b, -1).amin(1), torch.zeros(b))
    edit_mask = _half(f)
    out = comfy.run_node("DDE_DiffEditEdit", model=f.model, query=f.positive, latent={"samples": f.latent},
                         mask=edit_mask, steps=STEPS, encode_ratio=0.8, cfg=1.0, scheduler="normal", refine=0,
                         invert=False, reference=f.negative)[0]["samples"]
    assert out.shape == f.latent.shape
    assert torch.equal(out[..., : w // 2], f.latent[..., : w // 2])
    assert not torch.equal(out[..., w // 2:], f.latent[..., w // 2:])


@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_strength_fan_and_schedule_preview(comfy, fam, vaes, run, name, frames):
    f = fam(name, frames)
    t = f.latent.shape[2] if f.latent.ndim == 5 else 1
    h, w = f.latent.shape[-2:]
    picture, effective, start = comfy.run_node("DDE_SchedulePreview", model=f.model, change_map=_half(f), steps=STEPS,
                                               sampler_name="euler", scheduler="normal", denoise=1.0, mode="step",
                                               invert=False, latent_image={"samples": f.latent})
    assert effective.shape == start.shape == (t, h, w)
    assert torch.equal(effective[..., : w // 2], torch.zeros_like(effective[..., : w // 2]))
    assert torch.equal(effective[..., w // 2:], torch.ones_like(effective[..., w // 2:]))
    vae = vaes(name)
    if vae is None:
        pytest.skip(f"{name}: no small VAE of its latent channels that ComfyUI can build (Strength Fan needs one)")
    fan, panels, latents = comfy.run_node("DDE_StrengthFan", model=f.model, seed=3, steps=STEPS, sampler_name="euler",
                                          scheduler="normal", cfg=2.0, positive=f.positive, negative=f.negative,
                                          latent_image={"samples": f.latent}, vae=vae, strengths="0, 1", mode="step",
                                          layout="grid", columns=0)
    lat = latents["samples"]
    assert torch.equal(lat[0:1], f.latent)
    # strength 1 is KSampler on the same batch (one noise for both panels; ComfyUI is not batch-size invariant),
    # except on inpainting models: sharing the run with a kept panel, they see the original in their concat
    # channels (ComfyUI's noise-mask inpainting), where plain KSampler shows them a blank picture
    pair = {"samples": f.latent.repeat(2, *([1] * (f.latent.ndim - 1))), "batch_index": [0, 0]}
    if name not in MASK_CONCAT:
        ref = run.ksampler(f.model, f, latent=pair)[1:2]
        if name in PER_TOKEN_ROUNDING:
            assert torch.allclose(lat[1:2], ref, rtol=0, atol=1e-6 * float(ref.abs().max()))
        else:
            assert torch.equal(lat[1:2], ref)
    assert not torch.equal(lat[1:2], f.latent)
    frames = vae.decode(f.latent).reshape(-1, *panels.shape[-3:]).shape[0]
    assert panels.shape[0] == 2 * frames and panels.shape[-1] == 3 and fan.ndim == 4 and fan.shape[0] == 1


def test_qwen_image_takes_the_4d_latent_of_empty_sd3_latent_image(comfy, fam, vaes, run):
    """EmptySD3LatentImage gives Qwen-Image a 4-D 16-channel latent of zeros; KSampler makes it (B,16,1,H,W)
    (``fix_empty_latent_channels``) and every pack node does the same."""
    f = fam("qwen_image")
    empty = comfy.run_node("EmptySD3LatentImage", width=64, height=64, batch_size=1)[0]
    assert empty["samples"].shape == (1, 16, 8, 8)
    heat, mask, _, _ = comfy.run_node("DDE_DiffEditMask", model=f.model, query=f.positive, latent=empty, n=2,
                                      reference=f.negative)
    assert heat.shape == mask.shape == (1, 64, 64) and torch.isfinite(heat).all()
    out = comfy.run_node("DDE_DiffEditEdit", model=f.model, query=f.positive, latent=empty, mask=_half(f), steps=STEPS,
                         encode_ratio=0.8, cfg=1.0, scheduler="normal", refine=0, invert=False,
                         reference=f.negative)[0]["samples"]
    assert out.shape == (1, 16, 1, 8, 8) and torch.equal(out[..., :4], torch.zeros_like(out[..., :4]))
    _, effective, _ = comfy.run_node("DDE_SchedulePreview", model=f.model, change_map=_half(f), steps=STEPS,
                                     sampler_name="euler", scheduler="normal", denoise=1.0, mode="step", invert=False,
                                     latent_image=empty)
    assert effective.shape == (1, 8, 8)
    fan, panels, latents = comfy.run_node("DDE_StrengthFan", model=f.model, seed=3, steps=STEPS, sampler_name="euler",
                                          scheduler="normal", cfg=1.0, positive=f.positive, negative=f.negative,
                                          latent_image=empty, vae=vaes("qwen_image"), strengths="0, 1", mode="step",
                                          layout="grid", columns=0)
    assert latents["samples"].shape == (2, 16, 1, 8, 8) and torch.equal(latents["samples"][0], torch.zeros(16, 1, 8, 8))
    assert panels.ndim == 4 and panels.shape[0] == 2 and fan.shape[0] == 1
    ref = run.ksampler(f.model, f, cfg=1.0, latent={"samples": empty["samples"].repeat(2, 1, 1, 1), "batch_index": [0, 0]})
    assert torch.equal(latents["samples"][1:2], ref[1:2])


def test_video_diffedit_masks_are_per_frame_and_smooth_over_time(comfy, fam):
    """Two latent frames: one heat per frame from the same draws; temporal smoothing mixes the frames' differences."""
    f = fam("wan21", 2)

    def heat(temporal):
        return comfy.run_node("DDE_DiffEditMask", model=f.model, query=f.positive, latent={"samples": f.latent},
                              strength=0.5, n=2, seed=0, cfg=1.0, threshold_method="rescale", threshold=0.5,
                              clamp_ratio=3.0, percentile=0.8, smooth=0.0, grow=0, batch_size=0, reference=f.negative,
                              temporal_smooth=temporal)[0]

    alone, smoothed = heat(0), heat(1)
    assert alone.shape == smoothed.shape == (2, 64, 64)
    assert float(alone.amax()) == 1.0 and float(alone.amin()) == 0.0          # normalised over the whole video
    assert not torch.equal(alone[0], alone[1])
    assert (smoothed[0] - smoothed[1]).abs().max() < (alone[0] - alone[1]).abs().max()


@pytest.mark.parametrize("name,frames", CASES, ids=IDS)
def test_advanced_split_keeps_the_black_half_and_continues_the_schedule(comfy, fam, name, frames):
    """Differential KSampler (Advanced) in two parts (leftover noise, then add_noise disable): black half bit-exact."""
    f = fam(name, frames)
    same = dict(model=f.model, noise_seed=3, steps=4, cfg=1.0, sampler_name="euler", scheduler="normal",
                positive=f.positive, negative=f.negative, change_map=_half(f), mode="step", invert=False, strength=1.0,
                softness=0.0)
    first = comfy.run_node("DDE_DifferentialKSamplerAdvanced", **same, add_noise="enable",
                           latent_image={"samples": f.latent}, start_at_step=0, end_at_step=2,
                           return_with_leftover_noise="enable")[0]
    out = comfy.run_node("DDE_DifferentialKSamplerAdvanced", **same, add_noise="disable", latent_image=first,
                         start_at_step=2, end_at_step=10000, return_with_leftover_noise="disable")[0]["samples"]
    w = f.latent.shape[-1] // 2
    assert torch.equal(out[..., :w], f.latent[..., :w])
    assert torch.isfinite(out).all() and not torch.equal(out[..., w:], f.latent[..., w:])


# -- latents the pack refuses: audio / 3D models, the wrong dimensions, nested audio + video ------------------

def _refusals(comfy, model, latent, cond):
    """(node, input, run) for every node that takes a MODEL and a LATENT."""
    cmap = torch.ones(1, 64, 64)
    return [
        ("Differential KSampler", "latent_image", lambda: comfy.run_node(
            "DDE_DifferentialKSampler", model=model, positive=cond, negative=cond, latent_image=latent, change_map=cmap)),
        ("Differential KSampler (Advanced)", "latent_image", lambda: comfy.run_node(
            "DDE_DifferentialKSamplerAdvanced", model=model, positive=cond, negative=cond, latent_image=latent,
            change_map=cmap)),
        ("DiffEdit Mask", "latent", lambda: comfy.run_node("DDE_DiffEditMask", model=model, query=cond, latent=latent)),
        ("DiffEdit Edit", "latent", lambda: comfy.run_node("DDE_DiffEditEdit", model=model, query=cond, latent=latent,
                                                           mask=cmap)),
        ("Strength Fan", "latent_image", lambda: comfy.run_node(
            "DDE_StrengthFan", model=model, positive=cond, negative=cond, latent_image=latent, vae=None)),
        ("Change Map Schedule Preview", "latent_image", lambda: comfy.run_node(
            "DDE_SchedulePreview", model=model, change_map=cmap, latent_image=latent)),
    ]


@pytest.mark.parametrize("name", F.OTHERS)
def test_audio_and_3d_latents_are_refused_naming_the_input(comfy, name):
    """Stable Audio (1-D), ACE-Step (4-D, but audio) and Hunyuan3D (1-D shape latents): every node refuses the
    latent before sampling, naming the node and the input."""
    model, samples = F.other_model(name)
    cond = [[torch.zeros(1, 4, 768), {}]]
    for node, input_name, run in _refusals(comfy, model, {"samples": samples}, cond):
        with pytest.raises(ValueError) as error:
            run()
        assert str(error.value).startswith(f"{node}: input '{input_name}' expected the latent of an image or video "
                                           f"model"), str(error.value)


@pytest.mark.parametrize("name,shape,expected", [
    ("sd15", (1, 4, 2, 8, 8), "an image LATENT (batch, channels, height, width), got tensor of shape (1, 4, 2, 8, 8)"),
    ("wan21", (1, 16, 8), "an image LATENT (batch, channels, height, width) or a video LATENT"),
], ids=["video-latent-for-an-image-model", "3d-latent-for-a-video-model"])
def test_a_latent_of_other_dimensions_than_the_model_samples_is_refused(comfy, fam, name, shape, expected):
    """A video latent for an image model (which fails inside the model in KSampler), a 3-D one for a video model."""
    f = fam(name)
    for node, input_name, run in _refusals(comfy, f.model, {"samples": torch.zeros(shape)}, f.positive):
        with pytest.raises(ValueError) as error:
            run()
        assert str(error.value).startswith(f"{node}: input '{input_name}' expected {expected}"), str(error.value)


def test_video_maps_of_another_count_than_the_frames_are_refused(comfy, fam):
    """A video latent of 2 frames takes 1, 2 (one per latent frame) or B x T maps; 3 maps name the change map."""
    f = fam("wan21", 2)
    expected = "Differential KSampler: input 'change_map' expected 1, 2 \\(one per latent frame\\) or 2 maps"
    with pytest.raises(ValueError, match=expected):
        comfy.run_node("DDE_DifferentialKSampler", model=f.model, positive=f.positive, negative=f.negative,
                       latent_image={"samples": f.latent}, change_map=torch.ones(3, 64, 64))


def test_nested_audio_video_latent_is_refused(comfy, fam):
    """LTX-2's audio + video latent (LTXVConcatAVLatent: nested): every node names the latent input; Apply Change
    Map + KSampler refuses it inside sampling. Its video stream alone runs in the matrix (``ltxav``)."""
    import nodes

    f = fam("ltxav")
    audio = {"samples": torch.zeros(1, 8, 5, 16)}
    av = comfy.run_node("LTXVConcatAVLatent", video_latent={"samples": f.latent}, audio_latent=audio)[0]
    assert av["samples"].is_nested
    for node, input_name, run in _refusals(comfy, f.model, av, f.positive):
        with pytest.raises(ValueError) as error:
            run()
        assert str(error.value).startswith(f"{node}: input '{input_name}' expected an image LATENT"), str(error.value)
    patched = comfy.run_node("DDE_ApplyChangeMap", model=f.model, change_map=_map(f, 0.5), mode="step", invert=False,
                             strength=1.0, softness=0.0, scheduler="normal")[0]
    with pytest.raises(ValueError, match="input 'latent_image' expected a single latent \\(not a nested multi-part"):
        nodes.KSampler().sample(patched, 3, STEPS, 1.0, "euler", "normal", f.positive, f.negative, av)


# -- picture pixels per latent cell: from the model's latent format -------------------------------------------

@pytest.mark.parametrize("name,ratio", [("chroma_radiance", 1), ("sd15", 8), ("flux2", 16)])
def test_nodes_without_a_picture_size_it_by_the_models_pixels_per_latent_cell(comfy, fam, name, ratio):
    """DiffEdit Mask without an image gives masks of the picture's size (latent x the latent format's downscale
    ratio: 1 in pixel space, 16 for Flux.2); the Schedule Preview without a latent takes map size / that ratio cells."""
    f = fam(name)
    h, w = f.latent.shape[-2:]
    heat, mask, shown, _ = comfy.run_node("DDE_DiffEditMask", model=f.model, query=f.positive,
                                          latent={"samples": f.latent}, n=1, reference=f.negative)
    assert heat.shape == mask.shape == (1, ratio * h, ratio * w) and shown.shape == (1, ratio * h, ratio * w, 3)
    cmap = torch.zeros(1, 64, 64)
    cmap[..., 32:] = 1.0
    _, effective, _ = comfy.run_node("DDE_SchedulePreview", model=f.model, change_map=cmap, steps=STEPS,
                                     sampler_name="euler", scheduler="normal", denoise=1.0, mode="step", invert=False)
    cells = 64 // ratio
    assert effective.shape == (1, cells, cells)
    assert torch.equal(effective[..., cells // 2:], torch.ones_like(effective[..., cells // 2:]))
    assert torch.equal(effective[..., : cells // 2], torch.zeros_like(effective[..., : cells // 2]))
