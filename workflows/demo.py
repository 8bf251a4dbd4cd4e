"""The pack's headless demo: its nodes on the analytic world, pictures a person can look at.

    bash .ci/demo                      # writes demo_out/*.png and demo_out/summary.txt
    python workflows/demo.py --out DIR [--readme-images DIR]

With ComfyUI (COMFYUI_PATH or ~/comfy/ComfyUI) the pack is loaded by ComfyUI's own loader and
its nodes run on real ComfyUI sampling with the analytic world's ideal denoiser as the model
(pictures in seconds on a CPU, no weights needed). Without ComfyUI only the pure core runs:
change maps, start-step schedules and DiffEdit statistics from the exact posterior.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))   # the test-support package dde_world (never the pack root)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dde_world import locate  # noqa: E402
from dde_world.analytic import AnalyticVAE, AnalyticWorld  # noqa: E402
from dde_world.probes import iou  # noqa: E402

README_IMAGES = {
    "soft_inpainting_gradient.png": "differential_radial.png",
    "diffedit_mask_edit.png": "diffedit_edit_panel.png",
    "diffedit_semantic_differential.png": "semantic_panel.png",
    "strength_fan.png": "strength_fan_grid.png",
    "depth_change_map.png": "depth_panel.png",
    "sdxl_base_refiner_split.png": "split_panel.png",
    "flow_model_sd3.png": "schedule_flow_panel.png",
    "modes_eps.png": "modes_eps.png",
    "modes_flow.png": "modes_flow.png",
    "input.png": "input.png",
    "capability_edit_change_map.png": "capability_edit_change_map.png",
    "capability_fractional.png": "capability_fractional.png",
    "capability_prefill.png": "capability_prefill.png",
    "capability_adaptive_composite.png": "capability_adaptive_composite.png",
    "several_edits.png": "several_edits_panel.png",
    "region_locked_edit.png": "region_locked_panel.png",
    "capability_region_locked.png": "region_locked_panel.png",
}


def to_image(x: torch.Tensor) -> torch.Tensor:
    """MASK (B,H,W) or (H,W), IMAGE (B,H,W,3) or one picture (H,W,3) → one (H,W,3) picture."""
    if x.ndim == 3 and x.shape[-1] == 3:   # already one picture
        return x.float().clamp(0, 1)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim == 3:
        x = x.unsqueeze(-1).expand(*x.shape, 3)
    return x[0, ..., :3].float().clamp(0, 1)


def row(*pictures: torch.Tensor, gap: int = 6) -> torch.Tensor:
    """Pictures side by side (same height) with a white gap."""
    pics = [to_image(p) for p in pictures]
    h = max(p.shape[0] for p in pics)
    out = []
    for i, p in enumerate(pics):
        if p.shape[0] != h:
            p = torch.nn.functional.interpolate(p.permute(2, 0, 1)[None], size=(h, int(p.shape[1] * h / p.shape[0])),
                                                mode="nearest")[0].permute(1, 2, 0)
        out.append(p)
        if i < len(pics) - 1:
            out.append(torch.ones(h, gap, 3))
    return torch.cat(out, dim=1)


class Writer:
    def __init__(self, out: str):
        self.out = out
        self.files: list[str] = []
        self.lines: list[str] = []
        os.makedirs(out, exist_ok=True)

    def png(self, name: str, x: torch.Tensor):
        arr = (to_image(x).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        path = os.path.join(self.out, name)
        Image.fromarray(arr).save(path)
        self.files.append(path)

    def say(self, text: str = ""):
        print(text)
        self.lines.append(text)

    def finish(self):
        with open(os.path.join(self.out, "summary.txt"), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        print("\nwrote " + ", ".join(os.path.basename(p) for p in self.files) + f" and summary.txt in {self.out}")


def run_comfy(w: Writer, comfy_path: str):
    env = locate.comfy_in_process(comfy_path)
    import comfy.utils
    from dde_world.comfy_world import conditioning, make_model

    comfy.utils.PROGRESS_BAR_ENABLED = False
    node = env.node
    world = AnalyticWorld()
    vae = AnalyticVAE(world)
    eps, flow = make_model(world, "eps"), make_model(world, "flow")
    uncond = conditioning(world, None)
    w.say(f"ComfyUI: {comfy_path} — pack loaded by ComfyUI's loader: {len(env.pack_ids)} nodes")

    src = world.latent(0)
    picture = world.decode(src)
    w.png("input.png", picture)
    graded = conditioning(world, world.smooth_id(0))
    dk = node("DDE_DifferentialKSampler")

    # 1. soft inpainting with a radial gradient
    radial = node("DDE_RadialGradientMap").execute(width=256, height=256, batch_size=1, centre_x=0.5, centre_y=0.55,
                                                   inner_radius=0.1, outer_radius=0.45, curve="smoothstep", gamma=1.0,
                                                   invert=False)[0]
    out = dk.execute(eps, 0, 20, 1.0, "euler", "normal", graded, uncond, {"samples": src}, 1.0, radial, "step", False, 1.0,
                     0.0)[0]["samples"]
    result = world.decode(out)
    composite = node("DDE_CompositeByChangeMap").execute(picture, result, radial, "map", 0, False)[0]
    w.png("change_map_radial.png", radial)
    w.png("differential_radial.png", row(picture, radial, composite))
    w.say("1. soft inpainting: radial change map (white = change) -> Differential KSampler (eps, 20 steps)")
    metrics = node("DDE_ChangeMapAdherence").execute(picture, composite, radial, 0, False, "")
    w.say("   adherence of the result to the map:\n" + "\n".join("     " + l for l in metrics[7].splitlines()))

    # 2. DiffEdit: automatic mask, then the edit
    q, r = conditioning(world, world.query_id(0)), conditioning(world, world.reference_id(0))
    heat, mask, shown, _area = node("DDE_DiffEditMask").execute(eps, q, {"samples": src}, 0.5, 10, 0, 1.0, "rescale", 0.5, 3.0, 0.8,
                                                          0.0, 0, 0, r, None, picture)
    edited = node("DDE_DiffEditEdit").execute(eps, q, {"samples": src}, mask, 20, 0.8, 3.0, "normal", 2, False, r)[0]
    edit_picture = world.decode(edited["samples"])
    region = world.scenes[0].region.float().repeat_interleave(8, 0).repeat_interleave(8, 1)
    w.png("diffedit_heat.png", heat)
    w.png("diffedit_mask.png", mask)
    w.png("diffedit_edit_panel.png", row(picture, shown, edit_picture))
    outside = torch.nn.functional.avg_pool2d(mask[:1, None], 8)[0, 0] == 0   # latent cells the mask does not touch
    w.say(f"2. DiffEdit: mask IoU with the true changed region {iou(mask[0], region):.3f}; "
          f"outside the mask the latent is unchanged: {torch.equal(edited['samples'][..., outside], src[..., outside])}")

    # 3. DiffEdit heat -> semantic change map -> Differential KSampler
    semantic = node("DDE_SemanticChangeMap").execute(heat=heat, floor=0.1, ceiling=1.0, gamma=0.7, normalize=False)[0]
    sem_out = dk.execute(eps, 1, 20, 2.0, "dpmpp_2m", "karras", q, uncond, {"samples": src}, 1.0, semantic, "denoise", False,
                         1.0, 0.0)[0]["samples"]
    w.png("semantic_panel.png", row(picture, semantic, world.decode(sem_out)))
    w.say("3. semantic change map (floor 0.1, gamma 0.7) from the DiffEdit heat -> Differential KSampler (denoise mode)")

    # 4. Strength Fan
    fan = node("DDE_StrengthFan")
    grid = fan.execute(eps, 0, 20, "euler", "normal", 1.0, graded, uncond, {"samples": src}, vae,
                       "0, 0.2, 0.4, 0.6, 0.8, 1", "step", "grid", 3)[0]
    sweep = fan.execute(eps, 0, 20, "euler", "normal", 1.0, graded, uncond, {"samples": src}, vae,
                        "0, 0.2, 0.4, 0.6, 0.8, 1", "step", "fan", 0)[0]
    w.png("strength_fan_grid.png", grid)
    w.png("strength_fan.png", sweep)
    w.say("4. Strength Fan: 6 strengths in one batched run (grid and fan layouts)")

    # 5. depth-based change map (a synthetic depth picture: near in the middle)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 256), torch.linspace(-1, 1, 256), indexing="ij")
    depth = (1 - (xx ** 2 + yy ** 2).sqrt()).clamp(0, 1).unsqueeze(0).unsqueeze(-1).expand(1, 256, 256, 3).contiguous()
    depth_map = node("DDE_DepthChangeMap").execute(depth=depth, change="far", near_value=1.0, far_value=0.0,
                                                   curve="linear", gamma=1.0)[0]
    d_out = dk.execute(eps, 2, 20, 1.0, "euler", "normal", graded, uncond, {"samples": src}, 1.0, depth_map, "step", False,
                       1.0, 0.0)[0]["samples"]
    w.png("depth_panel.png", row(depth, depth_map, world.decode(d_out)))
    w.say("5. depth change map: the far background changes, the near centre is kept")

    # 6. split sampling (base + refiner) == one pass
    adv = node("DDE_DifferentialKSamplerAdvanced")
    lin = node("DDE_LinearGradientMap").execute(width=256, height=256, batch_size=1, angle=0.0, offset=0.0, curve="linear",
                                                gamma=1.0, invert=False)[0]
    args = (3, 25, 1.0, "euler", "normal", graded, uncond)
    one = adv.execute(eps, "enable", *args, {"samples": src}, 0, 10000, "disable", lin, "step", False, 1.0, 0.0)[0]
    part = adv.execute(eps, "enable", *args, {"samples": src}, 0, 20, "enable", lin, "step", False, 1.0, 0.0)[0]
    two = adv.execute(eps, "disable", *args, part, 20, 10000, "disable", lin, "step", False, 1.0, 0.0)[0]
    diff = (one["samples"] - two["samples"]).abs().max().item()
    w.png("split_panel.png", row(picture, lin, world.decode(two["samples"])))
    w.say(f"6. split sampling 0-20 + 20-25 vs one pass of 25 steps: max latent difference {diff:.2e}")

    # 7. flow models: a grey means little in timestep mode, what you asked for in denoise/step mode
    preview = node("DDE_SchedulePreview")
    shown, means = [], []
    for mode in ("timestep", "denoise"):
        pic, eff, _ = preview.execute(flow, lin, 20, "euler", "simple", 1.0, mode, False)
        shown.append(pic)
        means.append(f"{mode} mode {eff.mean():.3f}")
    w.say("7. flow model (shift 3), linear gradient: mean effective strength " + ", ".join(means))
    for fam, model in (("eps", eps), ("flow", flow)):
        pics = [preview.execute(model, lin, 20, "euler", "normal" if fam == "eps" else "simple", 1.0, mode, False)[0]
                for mode in ("step", "denoise", "timestep")]
        stacked = [to_image(p) for p in pics]
        gap = torch.ones(6, stacked[0].shape[1], 3)
        w.png(f"modes_{fam}.png", torch.cat([stacked[0], gap, stacked[1], gap, stacked[2]]))
    w.say("   modes_eps.png / modes_flow.png: step, denoise and timestep mode (top to bottom) for a left-to-right ramp")
    w.png("schedule_flow_timestep.png", shown[0])
    w.png("schedule_flow_denoise.png", shown[1])
    w.png("schedule_flow_panel.png", torch.cat([to_image(shown[0]), torch.ones(6, shown[0].shape[2], 3), to_image(shown[1])]))

    # 8. the editing capabilities (change map from an edit, fractional strength, pre-fill, adaptive composite)
    run_capabilities(w, env, world, eps, graded, uncond, src, picture)

    # 9. several edits at once
    run_several_edits(w, env)

    # 10. an instruction editor locked to a region
    run_region_locked(w, env, world)


def run_several_edits(w, env):
    """Two objects, two instructions: Edit Concept x 2 -> DiffEdit Masks (several edits) -> Differential KSampler."""
    from dde_world.comfy_world import conditioning, make_model

    world = AnalyticWorld()   # a world of its own: its unconditional mixture knows the two-object scene
    e = world.add_two_edits()
    model = make_model(world, "eps")
    ref = conditioning(world, e.reference)
    chain = None
    for edit in (e.edit_a, e.edit_b):
        chain = env.run_node("DDE_EditConcept", query=conditioning(world, edit), reference=ref, previous=chain)[0]
    picture = world.decode(e.latent)
    positive, cmap, _masks, _heats, shown = env.run_node("DDE_DiffEditMasks", model=model, concepts=chain,
                                                          latent={"samples": e.latent}, image=picture).args
    out = env.run_node("DDE_DifferentialKSampler", model=model, seed=0, steps=20, cfg=3.0, sampler_name="euler",
                       scheduler="normal", positive=positive, negative=conditioning(world, None),
                       latent_image={"samples": e.latent}, change_map=cmap)[0]["samples"]
    w.png("several_edits_panel.png", row(picture, shown, world.decode(out)))
    kept = torch.nn.functional.avg_pool2d(cmap[:, None], 8)[0, 0] == 0
    far = [float((out[..., r] - e.target[..., r]).abs().mean() / (e.latent[..., r] - e.target[..., r]).abs().mean())
           for r in (e.region_a, e.region_b)]
    w.say(f"9. two edits in one pass (the disk turns red, the box blue): {far[0]:.1%} / {far[1]:.1%} of the way to "
          f"each target left; outside both regions the latent is unchanged: "
          f"{torch.equal(out[..., kept], e.latent[..., kept])}")


def run_region_locked(w, env, world):
    """The analytic instruction editor ("the red objects turn blue") on a scene with two objects of the named
    colour: its own DiffEdit heat finds both; a painted mask on one locks the edit there."""
    import nodes
    from dde_world import editors as E

    s = E.editor_scene(100)
    a, b = s.instruction
    other = next(o for o in s.objects if not torch.equal(o, s.changed))
    source = s.source.clone()
    source[0, :3][:, other] = torch.tensor(E.PALETTE[a]).view(3, 1)
    model = E.make_editor_model(E.AnalyticEditor(shade=1.0), "flow")
    pos, keep = E.editor_conditioning(s.instruction, source), E.editor_conditioning(None, source)
    picture = world.decode(source)
    heat, _mask, shown, _ = env.run_node("DDE_DiffEditMask", model=model, query=pos, latent={"samples": source},
                                         reference=keep, image=picture).args
    plain = nodes.common_ksampler(model, 3, 12, 1.0, "euler", "normal", pos, keep, {"samples": source})[0]["samples"]
    painted = torch.nn.functional.max_pool2d(s.changed.float()[None, None], 3, 1, 1)[0]
    painted = painted.repeat_interleave(8, 1).repeat_interleave(8, 2)
    locked = env.run_node("DDE_DifferentialKSampler", model=model, seed=3, steps=12, cfg=1.0, sampler_name="euler",
                          scheduler="normal", positive=pos, negative=keep, latent_image={"samples": source},
                          change_map=painted)[0]["samples"]
    w.png("region_locked_panel.png", row(picture, shown, world.decode(plain), world.decode(locked)))
    kept = painted[0, ::8, ::8] == 0
    w.say(f"10. region-locked instruction edit: the editor alone recolours both objects of the named colour; locked "
          f"by a painted mask on one, the latent outside it is unchanged: "
          f"{torch.equal(locked[0][:, kept], source[0][:, kept])}")


def run_capabilities(w, env, world, eps, graded, uncond, src, picture):
    """One picture per capability: change map from an edit, fractional strength, pre-fill, adaptive composite."""
    from dde_world.comfy_world import conditioning

    node = env.node
    dk = node("DDE_DifferentialKSampler")
    comp = node("DDE_CompositeByChangeMap")
    # an "instruction editor": the disk becomes the query's square, every colour shifts a little, mild noise
    scene = world.scenes[0]
    box = torch.nn.functional.max_pool2d(scene.region.float()[None, None], 3, 1, 1)[0]
    box = box.repeat_interleave(8, 1).repeat_interleave(8, 2)
    sharp = conditioning(world, world.sharp_id(0))
    edited = world.decode(dk.execute(eps, 4, 20, 1.0, "euler", "normal", sharp, uncond, {"samples": src}, 1.0,
                                     box, "step", False, 1.0, 0.0)[0]["samples"])
    g = torch.Generator().manual_seed(0)
    after = (edited * torch.tensor([1.03, 0.98, 1.02]) + 0.01 + 0.01 * torch.randn(edited.shape, generator=g)).clamp(0, 1)
    cmap, mask, _aligned = node("DDE_ChangeMapFromEdit").execute(picture, after, "affine", 6.0, 15.0, 2, 4).args
    kept = comp.execute(picture, after, cmap, "map", 0, False)[0]
    w.png("capability_edit_change_map.png", row(picture, after, cmap, kept))
    outside = cmap[0] == 0
    w.say(f"8a. change map from edit: {float(outside.float().mean()):.1%} of the pixels at map 0, there the composite "
          f"equals the original: {torch.equal(kept[0][outside], picture[0][outside])}")

    lin = node("DDE_LinearGradientMap").execute(width=256, height=256, batch_size=1, angle=0.0, offset=0.0,
                                                curve="linear", gamma=1.0, invert=False)[0]
    bands = [world.decode(dk.execute(eps, 0, 4, 1.0, "euler", "normal", graded, uncond, {"samples": src}, 1.0, lin,
                                     "step", False, 1.0, 0.0, frac)[0]["samples"]) for frac in (False, True)]
    gap = torch.ones(6, 256, 3)
    w.png("capability_fractional.png", torch.cat([to_image(lin), gap, to_image(bands[0]), gap, to_image(bands[1])]))
    w.say("8b. 4 steps, left-to-right ramp: step mode (4 bands, middle) vs fractional (smooth, bottom)")

    strong = scene.query.clone()
    strong[:, scene.region] = torch.tensor([-0.9, 0.9, 0.9, 0.5]).view(4, 1)
    strong = strong.unsqueeze(0)
    pmap = torch.zeros(1, 32, 32)
    pmap[:, scene.region] = 0.6
    pmap = pmap.repeat_interleave(8, 1).repeat_interleave(8, 2)
    outs = [world.decode(dk.execute(eps, 0, 20, 1.0, "euler", "normal", graded, uncond, {"samples": strong}, 1.0, pmap,
                                    "step", False, 1.0, 0.0, False, method, 0.5)[0]["samples"])
            for method in ("original", "fill")]
    w.png("capability_prefill.png", row(world.decode(strong), pmap, outs[0], outs[1]))
    w.say("8c. pre-fill at map 0.6: picture with a strong object, map, prefill original (the object stays), fill")

    half = torch.full((1, 256, 256), 0.7)
    plain = comp.execute(picture, after, half, "map", 0, False)[0]
    adaptive = comp.execute(picture, after, half, "map", 0, False, 0.08, 2.0, 0.0)[0]
    snapped = ((adaptive - picture).abs().amax(-1) == 0).float()
    w.png("capability_adaptive_composite.png", row(plain, adaptive, snapped))
    w.say(f"8d. composite at map 0.7: plain vs difference threshold 0.08 (white: pixels back to the original "
          f"exactly, {float(snapped.mean()):.1%})")


def run_core(w: Writer):
    """Without ComfyUI: what the pure core shows on its own."""
    pack = locate.import_pack()
    from dde_pack.nodes.core import construct, schedule, visual
    from dde_pack.nodes.core import diffedit_math as diffedit

    w.say("ComfyUI NOT found (set COMFYUI_PATH): showing the pure core only")
    world = AnalyticWorld()
    src = world.latent(0)
    w.png("input.png", world.decode(src))
    radial = construct.radial_gradient((1, 256, 256), 0.5, 0.55, 0.1, 0.45, "smoothstep")
    w.png("change_map_radial.png", radial)
    small = torch.nn.functional.interpolate(radial.unsqueeze(1), size=(32, 32), mode="area")[:, 0]
    start = schedule.start_steps_step(small, 20)
    eff = schedule.free_steps(start, 20) / 20
    w.png("schedule_step.png", visual.schedule_image(start[0], eff[0], 20))
    noise = diffedit.draw_noise(0, range(10), src.shape)
    sig = torch.tensor([1.0])
    diff = torch.zeros(1, 32, 32)
    for e in noise:
        x = src + e
        dq = world.posterior_mean(x, sig, [world.query_id(0)])
        dr = world.posterior_mean(x, sig, [world.reference_id(0)])
        diff += (dq - dr).abs().mean(1) / len(noise)
    heat, mask = diffedit.heat_and_mask(diff, (256, 256))
    w.png("diffedit_heat.png", heat)
    w.png("diffedit_mask.png", mask)
    w.say(f"DiffEdit from the exact posterior: mask covers {mask.mean():.1%} of the picture")
    del pack


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--readme-images", default=None, help="also copy the README pictures into this folder")
    a = p.parse_args(argv)
    w = Writer(a.out)
    comfy_path = locate.find_comfyui()
    with torch.inference_mode():
        if comfy_path:
            run_comfy(w, comfy_path)
        else:
            run_core(w)
    w.finish()
    if a.readme_images and comfy_path:
        os.makedirs(a.readme_images, exist_ok=True)
        for target, source in README_IMAGES.items():
            shutil.copyfile(os.path.join(a.out, source), os.path.join(a.readme_images, target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
