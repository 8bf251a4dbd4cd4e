"""Differential Diffusion against the paper's own code and ComfyUI's built-in node, on one tiny SD1.5 model.

* ``step`` mode against the authors' own pipeline (exx8/differential-diffusion, ``SD2/diff_pipe.py`` at d78f3f3,
  executed from the git snapshot as it is, fixture ``exx8``, adapter in ``dde_world/exx8.py``; skipped loudly without
  the snapshot) with diffusers' Euler scheduler on ComfyUI's own sigmas and timesteps, the same noise (ComfyUI's
  ``prepare_noise`` is the first draw of a generator with the seed) and the same weights.
* ``timestep`` mode against ComfyUI's ``DifferentialDiffusion`` + ``SetLatentNoiseMask`` + ``KSampler``.

The deviations are on purpose and documented (docs/differential-diffusion.md, the ``mode`` tooltip); each test
pins their size. The figures are printed (``pytest -s``).
"""

import pytest
import torch

SCALE = 0.18215
STEPS, CFG, SEED = 20, 5.0, 3
SIZE = 16
#: 8-bit map values (k / 255) off every step boundary of N = 20 (k multiple of 12.75) and every timestep
#: threshold of the 20-step normal schedule (k multiple of 85), 0 and 1 included
LEVELS = [0, 10, 30, 45, 60, 80, 95, 115, 130, 150, 168, 185, 200, 220, 240, 255]


def level_map(levels=LEVELS) -> torch.Tensor:
    """``(1, SIZE, SIZE)``: column ``c`` holds ``levels[c] / 255`` (white = change)."""
    row = torch.tensor(levels, dtype=torch.float32) / 255.0
    return row.reshape(1, 1, SIZE).expand(1, SIZE, SIZE).clone()


@pytest.fixture(scope="module")
def scene(oracle):
    enc = oracle.peers.encode
    return {"latent": torch.randn(1, 4, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 5.0,
            "positive": enc(oracle.clip, "a watercolour of a harbour"), "negative": enc(oracle.clip, "")}


def pack_step(comfy, oracle, scene, g, denoise, mode="step"):
    """The Differential KSampler (euler, normal) on the map ``g`` (white = change); model units."""
    out = comfy.run_node("DDE_DifferentialKSampler", model=oracle.model, seed=SEED, steps=STEPS, cfg=CFG,
                         sampler_name="euler", scheduler="normal", positive=scene["positive"], negative=scene["negative"],
                         latent_image={"samples": scene["latent"]}, denoise=denoise, change_map=g, mode=mode)[0]
    return out["samples"] * SCALE


def exx8_loop(comfy, oracle, exx8, scene, g, denoise, steps=STEPS, cfg=CFG, latent=None):
    """The authors' pipeline (their ``__call__``) on the map ``1 - g`` (their polarity: white = keep), on the
    Differential KSampler's own sigmas; returns (latents in model units, their ``__call__``'s locals)."""
    sigmas = comfy.module("nodes.comfy_glue").ksampler_sigmas(oracle.model, steps, "euler", "normal", denoise, device="cpu")
    timesteps = oracle.model.get_model_object("model_sampling").timestep(sigmas[:-1]).to(torch.float32)
    pipe = exx8.pipeline(oracle.unet, oracle.text_encoder, oracle.tokenizer,
                         oracle.peers.comfy_euler(sigmas, timesteps), SCALE)
    latent = scene["latent"] if latent is None else latent
    (latents, nsfw), seen = oracle.peers.returned_locals("__call__", lambda: pipe(
        prompt_embeds=scene["positive"][0][0], negative_prompt_embeds=scene["negative"][0][0], image=latent,
        strength=1, num_inference_steps=steps, guidance_scale=cfg, generator=torch.Generator().manual_seed(SEED),
        output_type="latent", return_dict=False, map=1.0 - g))
    assert nsfw is None and latents is seen["latents"]   # no safety checker; decode_latents gave the latents back
    return latents, seen


def raised(g: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """The map one step later: ``g + 1/N`` (at most 1)."""
    return (g + 1.0 / steps).clamp(max=1.0)


@pytest.fixture(scope="module")
def runs(comfy, oracle, exx8, scene):
    g = level_map()
    theirs, _ = exx8_loop(comfy, oracle, exx8, scene, g, 0.9)
    return {"g": g, "exx8": theirs, "pack": pack_step(comfy, oracle, scene, g, 0.9),
            "pack_raised": pack_step(comfy, oracle, scene, raised(g), 0.9)}


def test_step_mode_is_the_papers_code_one_step_later(oracle, runs):
    """exx8's loop equals the pack's ``step`` mode with the map raised by 1/N (start below the top level).

    Their loop blends a kept pixel before the model call and then lets the scheduler step move every pixel, so
    a pixel of value g gets floor(gN) + 1 model steps there, and a pixel at 0 the last one; the pack gives
    floor(gN) and keeps a pixel at 0 exactly. (cfg 5 on random weights: latents up to about 25 model units,
    so the bound is relative to the largest value.)"""
    err = (runs["pack_raised"] - runs["exx8"]).abs().max().item()
    scale = runs["exx8"].abs().max().item()
    print("oracle step vs exx8 (map + 1/N):", oracle.peers.describe(max_abs=err, relative=err / scale, scale=scale))
    assert err <= 1e-5 * scale


def test_the_shift_itself_is_a_large_deviation_and_map_zero_stays_exact(oracle, scene, runs):
    g, ours, theirs = runs["g"], runs["pack"], runs["exx8"]
    zero = g[0] == 0
    src = scene["latent"] * SCALE
    dev = (ours - theirs).abs()
    kept_ours = (ours[..., zero] - src[..., zero]).abs().max().item()
    kept_theirs = (theirs[..., zero] - src[..., zero]).abs().max().item()
    print("oracle step vs exx8 (same map):", oracle.peers.describe(max_abs=dev.max(), mean_abs=dev.mean(),
                                                                    map0_pack=kept_ours, map0_exx8=kept_theirs))
    assert kept_ours <= 1e-6          # map 0: the input (LATENT units bit-exact, here through the 0.18215 scale)
    assert 0.01 < kept_theirs < 1.0   # exx8: the last step moves every pixel
    assert 1.0 < dev.max().item() < 20.0 and 0.05 < dev.mean().item() < 2.0


def test_full_denoise_starts_from_another_point(comfy, oracle, exx8, scene):
    """Deviation at denoise 1: ComfyUI starts at x0 + sqrt(1 + s0^2) n (its max-denoise start), the authors'
    scheduler at x0 + s0 n; everything else as above."""
    g = level_map()
    theirs, _ = exx8_loop(comfy, oracle, exx8, scene, g, 1.0)
    ours = pack_step(comfy, oracle, scene, raised(g), 1.0)
    dev = (ours - theirs).abs()
    print("oracle step vs exx8 at denoise 1 (map + 1/N):", oracle.peers.describe(max_abs=dev.max(), mean_abs=dev.mean()))
    assert 1e-3 < dev.max().item() < 0.5


def test_float32_boundaries_free_one_step_later_in_the_papers_code(comfy, oracle, exx8, scene):
    """On values on a step boundary (g = j/N) the authors' float32 ``map > i/N`` keeps some pixels one step longer
    than the pack's float64 rule (``ceil(N (1 - g))`` with a 1e-4 slack); elsewhere both free a pixel at the same
    iteration (their loop then gives it one more model step, see above)."""
    plan = comfy.module("nodes.plan")
    size = 8
    values = torch.arange(STEPS + 1, dtype=torch.float32) / STEPS                 # 0, 0.05, ..., 1 (float32)
    g = torch.zeros(1, size, size)
    g.view(-1)[: values.numel()] = values
    latent = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(1))
    _, seen = exx8_loop(comfy, oracle, exx8, scene, g, 0.9, cfg=1.0, latent=latent)
    keep = seen["masks"].to(torch.int64)                                            # (N, h, w): kept at iteration i
    first_free = torch.where(keep.all(0), torch.full_like(keep[0], STEPS), (1 - keep).argmax(0))
    key = plan.PlanKey.for_ksampler(oracle.model, (1, 4, size, size), STEPS, "euler", "normal", 0.9)
    start = plan.ChangeMap(maps=g, mode="step").plan(oracle.model, key).run.start[0, 0]
    ours = torch.where(torch.isfinite(start), start, torch.full_like(start, STEPS)).to(torch.int64)
    later = {round(float(v), 2): int(first_free.view(-1)[j] - ours.view(-1)[j]) for j, v in enumerate(values)}
    differ = sorted(v for v, d in later.items() if d)
    print("oracle float32 boundaries:", oracle.peers.describe(differ=differ))
    assert differ == [0.65, 0.9, 0.95]
    assert all(later[v] == 1 for v in differ)


def test_timestep_mode_is_comfyuis_builtin_node(comfy, oracle, scene):
    """``timestep`` mode = DifferentialDiffusion + SetLatentNoiseMask + KSampler where the map is above 0; at 0
    the built-in node frees the pixel at the last step (its threshold reaches 0), the pack keeps it exactly.
    Both last model calls see the same input, so only the map-0 pixels differ."""
    import nodes

    model, latent, g = oracle.model, scene["latent"], level_map()
    dd = comfy.run_node("DifferentialDiffusion", model=model)[0]
    masked = nodes.SetLatentNoiseMask().set_mask({"samples": latent}, g)[0]
    builtin = nodes.KSampler().sample(dd, SEED, STEPS, CFG, "euler", "normal", scene["positive"], scene["negative"],
                                      masked)[0]["samples"] * SCALE
    ours = pack_step(comfy, oracle, scene, g, 1.0, mode="timestep")
    zero = g[0] == 0
    src = latent * SCALE
    err = (ours[..., ~zero] - builtin[..., ~zero]).abs().max().item()
    moved = (builtin[..., zero] - src[..., zero]).abs().max().item()
    kept = (ours[..., zero] - src[..., zero]).abs().max().item()
    print("oracle timestep vs built-in:", oracle.peers.describe(max_abs_map_above_0=err, builtin_map0_change=moved,
                                                                 pack_map0_change=kept))
    assert err <= 1e-5 * builtin.abs().max().item()
    assert kept <= 1e-6 and 0.01 < moved < 1.0
