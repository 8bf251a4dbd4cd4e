"""Worst cases bounded by design: what the largest inputs cost now, and what they cost before.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_limits.py [--repeats 3] [--threads 0]

Paired rounds (order rotated every round), median seconds, on 1024 x 1024 maps:

1. grow (DiffEdit Mask, Change Map from Edit) at radius 1, 16 and 256; the previous kornia square kernel
   where it still fits in memory (its cost is H W (2r + 1)^2);
2. blur (feather, softness, smooth) at radius 1, 64 and 512 against kornia's convolution;
3. the distance falloff at outer 16, 256 and 4096 against trying every shift (the previous transform);
4. ``denoise``-mode planning at 10,000 steps of a random 64 x 128 map (32 x 32 latent), normal scheduler:
   now, and with every near-boundary level recomputed by ComfyUI's own schedule as before (no size cap);
5. the Schedule Preview's picture: its size for the worst-case grids, before and now (computed, nothing
   allocated), and the time to draw one at the size cap.
"""

from __future__ import annotations

import argparse
import functools
import math

import common

print = functools.partial(print, flush=True)   # noqa: A001


def med(times):
    return common.median(times)


def section_grow(core, torch, repeats):
    import kornia

    def old(m, r):
        k = torch.ones(2 * r + 1, 2 * r + 1)
        return kornia.morphology.dilation(m.unsqueeze(1), k, border_type="geodesic")[:, 0]

    m = (torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(0)) < 0.01).float()
    small = m[:, :256, :256].contiguous()
    print("\n== grow, 1024 x 1024 (kornia: 256 x 256, where its unfold still fits), median s")
    t = common.paired({f"r={r}": (lambda r=r: core.maps.grow(m, r)) for r in (1, 16, 256)}, repeats)
    print("  now     " + "  ".join(f"{k} {med(v):.3f}" for k, v in t.items())
          + f"   r=256 / r=1: {med(t['r=256']) / med(t['r=1']):.2f}")
    t = common.paired({f"r={r}": (lambda r=r: old(small, r)) for r in (1, 4, 16)}, max(1, repeats // 2))
    print("  kornia  " + "  ".join(f"{k} {med(v):.3f}" for k, v in t.items())
          + f"   r=16 / r=1: {med(t['r=16']) / med(t['r=1']):.1f} (at 256 x 256)")


def section_blur(core, torch, repeats):
    import kornia

    def old(m, r):
        k = 2 * r + 1
        return kornia.filters.gaussian_blur2d(m.unsqueeze(1), (k, k), (r / 2, r / 2), border_type="replicate")[:, 0]

    m = (torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    print("\n== blur, 1024 x 1024, median s (paired: now, kornia's convolution)")
    for r in (1, 64, 512):
        t = common.paired({"now": lambda: core.maps.blur_maps(m, r), "kornia": lambda: old(m, r)},
                          repeats if r < 512 else 1)
        print(f"  radius {r:>3}: now {med(t['now']):.3f}  kornia {med(t['kornia']):.3f}  "
              f"kornia / now {med(t['kornia']) / med(t['now']):.1f}")


def section_falloff(core, torch, repeats):
    def old(inside, limit):   # one pass per shift (the previous horizontal pass)
        b, h, w = inside.shape
        rows = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
        inf = torch.tensor(float("inf"))
        above = torch.where(inside, rows, -inf).cummax(dim=1).values
        below = torch.where(inside, rows, inf).flip(1).cummin(dim=1).values.flip(1)
        dy2 = torch.minimum(rows - above, below - rows) ** 2
        reach = min(int(math.ceil(limit)), w - 1)
        padded = torch.nn.functional.pad(dy2, (reach, reach), value=float("inf"))
        d2, shifted = dy2.clone(), torch.empty_like(dy2)
        for dx in range(1, reach + 1):
            for start in (reach + dx, reach - dx):
                torch.add(padded[..., start: start + w], float(dx * dx), out=shifted)
                torch.minimum(d2, shifted, out=d2)
        return torch.sqrt(d2)

    inside = torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(2)) < 0.001
    print("\n== distance falloff, sparse 1024 x 1024 mask, median s (paired: now, every shift)")
    for outer in (16.0, 256.0, 4096.0):
        t = common.paired({"now": lambda: core.construct.distance_to_mask(inside, outer),
                           "every shift": lambda: old(inside, outer)}, repeats if outer < 4096 else 1)
        print(f"  outer {outer:>6.0f}: now {med(t['now']):.2f}  every shift {med(t['every shift']):.2f}  "
              f"ratio {med(t['every shift']) / med(t['now']):.1f}")


def section_planning(env, torch):
    import time

    plan = env.module("nodes.plan")
    sch = env.module("nodes.core.schedule")
    model = common.near_free_model()
    g = torch.rand(1, 64, 128, generator=torch.Generator().manual_seed(0))
    shape = (1, 4, 32, 32)
    print("\n== denoise-mode planning, 10,000 steps, random 64 x 128 map (32 x 32 latent), euler/normal")
    start = time.perf_counter()
    full = plan.ksampler_sigmas(model, 10_000, "euler", "normal", 1.0, device="cpu")
    print(f"  ComfyUI's own 10,000-step schedule (KSampler, any node): {time.perf_counter() - start:.2f} s")
    key = plan.PlanKey.of(model, shape, full, plan.Reference("euler", "normal", 1.0))
    start = time.perf_counter()
    now = plan.ChangeMap(maps=g, mode="denoise").plan(model, key).run
    print(f"  now: {time.perf_counter() - start:.3f} s")
    saved = sch.EXACT_MAX_TOTAL, sch.EXACT_BUDGET, plan._one_level
    sch.EXACT_MAX_TOTAL = sch.EXACT_BUDGET = 2 ** 62
    plan._one_level = lambda *a: None   # every recheck through KSampler.calculate_sigmas, as before
    try:
        start = time.perf_counter()
        before = plan.ChangeMap(maps=g, mode="denoise").plan(model, key).run   # a new ChangeMap: no memo
        print(f"  before (every near level from ComfyUI's whole M-step schedule): {time.perf_counter() - start:.1f} s, "
              f"the same start steps: {bool(torch.equal(now.start, before.start))}")
    finally:
        sch.EXACT_MAX_TOTAL, sch.EXACT_BUDGET, plan._one_level = saved


def section_preview(core, torch):
    import time

    v = core.visual
    print("\n== Schedule Preview picture (height x width px, float32 size), before -> now")
    for label, (h, w) in (("8 x 2048 map", (256, 1)), ("8 x 512 map", (64, 1)), ("1024 x 1024 map", (128, 128)),
                          ("16384 x 16384 map", (2048, 2048))):
        s = max(8, -(-256 // w))                                     # the cell size before: no cap
        pw = w * s
        strip = int(max(10, pw // 14) * 1.7) + 2
        before = (strip + h * s + strip + max(6, strip // 2), 2 * pw + max(4, s // 2))
        now = v.schedule_image_size(h, w)
        mb = lambda hw: hw[0] * hw[1] * 3 * 4 / 2 ** 20
        print(f"  {label:<18} latent {h} x {w}: {before[0]} x {before[1]} ({mb(before):,.0f} MiB) -> "
              f"{now[0]} x {now[1]} ({mb(now):,.0f} MiB)")
    print(f"  a batch: at most {v.PREVIEW_MAX_PIXELS:,} pixels in all "
          f"({v.PREVIEW_MAX_PIXELS * 12 / 2 ** 20:,.0f} MiB), e.g. {v.schedule_images_fitting(4096, 256, 256)} pictures "
          f"of a 256 x 256 latent, {v.schedule_images_fitting(4096, 64, 64)} of a 64 x 64 one")
    start = torch.randint(0, 51, (256, 256), generator=torch.Generator().manual_seed(3)).float()
    start[start == 50] = float("inf")
    eff = core.schedule.free_steps(start, 50) / 50
    t0 = time.perf_counter()
    v.schedule_image(start, eff, 50)
    print(f"  drawing one at the cap (256 x 256 latent, 2048 px panels): {time.perf_counter() - t0:.2f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    a = p.parse_args()
    env = common.comfy("cpu")
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    from dde_world.locate import import_pack

    import_pack()   # the pack's core as ComfyUI loaded it, also reachable as dde_pack.nodes.core
    from dde_pack.nodes import core

    print(f"device: {common.device_name()}" + (f", {a.threads} torch thread(s)" if a.threads else ""))
    section_grow(core, torch, a.repeats)
    section_blur(core, torch, a.repeats)
    section_falloff(core, torch, a.repeats)
    section_planning(env, torch)
    section_preview(core, torch)


if __name__ == "__main__":
    main()
