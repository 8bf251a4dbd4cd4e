"""Exactness figures of the family matrix (docs/families.md): tiny random-weight models of every family.

Per family (``tests/dde_world/families.py``; 8 steps, euler / normal, cfg 2, seed 3):
  map0   max |out - input| over the three modes and Apply Change Map + KSampler / SamplerCustomAdvanced
  map1   max |Differential KSampler (map 1) - KSampler| and max |Apply Change Map (map 1) + KSampler - KSampler|
  ramp   mean |change| at uniform maps 0.25, 0.5, 0.75 (denoise mode) relative to map 1's mean change
  diffedit  max |out - input| outside DiffEdit Edit's mask
Plus the inpainting models under InpaintModelConditioning (noise_mask off / on) and euler_ancestral.
Families the running ComfyUI lacks are listed as skipped. ``--json FILE`` also writes the rows; ``--merge A B``
prints one table from the files of two ComfyUI versions, with the versions each family ran on.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/families_figures.py [family ...] [--json F]
    python benchmarks/families_figures.py --merge v0.8.json v0.33.json
"""

from __future__ import annotations

import argparse
import json
import sys

STEPS = 8
HEADER = ("| family | ComfyUI | latent | params | map 0 max abs diff | map 1 vs KSampler | ramp 0.25 / 0.5 / 0.75 "
          "| DiffEdit outside |\n|---|---|---|---|---|---|---|---|")


def measure(names):
    import common

    env = common.comfy()
    import torch
    import nodes

    from dde_world import families as F

    torch.set_num_threads(1)
    m = nodes.NODE_CLASS_MAPPINGS
    dk, apply = env.node("DDE_DifferentialKSampler"), env.node("DDE_ApplyChangeMap")
    edit = env.node("DDE_DiffEditEdit")
    version = F.comfy_version()

    def cmap(f, v):
        return torch.full((1, f.ratio * f.latent.shape[-2], f.ratio * f.latent.shape[-1]), float(v))

    def run_dk(f, value, mode, latent=None, pos=None, neg=None, sampler="euler"):
        return dk.execute(f.model, 3, STEPS, 2.0, sampler, "normal", pos or f.positive, neg or f.negative,
                          latent or {"samples": f.latent}, 1.0, cmap(f, value), mode, False, 1.0, 0.0)[0]["samples"]

    def ks(model, f, latent=None, pos=None, neg=None, sampler="euler"):
        return nodes.KSampler().sample(model, 3, STEPS, 2.0, sampler, "normal", pos or f.positive, neg or f.negative,
                                       latent or {"samples": f.latent})[0]["samples"]

    def sca(model, f):
        guider = m["CFGGuider"].execute(model, f.positive, f.negative, 2.0)[0]
        sigmas = m["BasicScheduler"].execute(model, "normal", STEPS, 1.0)[0]
        return m["SamplerCustomAdvanced"].execute(m["RandomNoise"].execute(3)[0], guider, m["KSamplerSelect"].execute("euler")[0],
                                                  sigmas, {"samples": f.latent})[0]["samples"]

    rows, inpaint = [], []
    with torch.inference_mode():
        for name in names:
            if F.unavailable(name):
                rows.append({"family": name, "comfyui": version, "skipped": F.unavailable(name)})
                continue
            f = F.build(name)
            params = sum(p.numel() for p in f.model.model.diffusion_model.parameters())
            zero = [(run_dk(f, 0.0, mode) - f.latent).abs().max() for mode in ("step", "denoise", "timestep")]
            patched0 = apply.execute(f.model, cmap(f, 0.0), "step", False, 1.0, 0.0, "normal")[0]
            zero += [(ks(patched0, f) - f.latent).abs().max(), (sca(patched0, f) - f.latent).abs().max()]
            ref = ks(f.model, f)
            patched1 = apply.execute(f.model, cmap(f, 1.0), "denoise", False, 1.0, 0.0, "normal")[0]
            one = max(float((run_dk(f, 1.0, "step") - ref).abs().max()), float((ks(patched1, f) - ref).abs().max()))
            full = float((ref - f.latent).abs().mean())
            ramp = [float((run_dk(f, g, "denoise") - f.latent).abs().mean()) / full for g in (0.25, 0.5, 0.75)]
            mask = cmap(f, 0.0)
            mask[..., mask.shape[-1] // 2:] = 1.0
            out = edit.execute(f.model, f.positive, {"samples": f.latent}, mask, STEPS, 0.8, 2.0, "normal", 0, False,
                               f.negative, None)[0]["samples"]
            w = f.latent.shape[-1] // 2
            rows.append({"family": name, "comfyui": version, "latent": str(tuple(f.latent.shape)),
                         "params": f"{params / 1e6:.2f}M", "map0": f"{float(max(zero)):.3g}", "map1": f"{one:.3g}",
                         "ramp": " / ".join(f"{r:.2f}" for r in ramp),
                         "diffedit": f"{float((out[..., :w] - f.latent[..., :w]).abs().max()):.3g}"})
            print(row_line(rows[-1]), file=sys.stderr, flush=True)

        for name in ("sd15_inpaint", "flux_fill"):
            f = F.build(name)
            vae = F.vae(name)
            h, w = f.latent.shape[-2:]
            pixels = torch.rand(1, 8 * h, 8 * w, 3, generator=torch.Generator().manual_seed(5))
            mask = torch.zeros(1, 8 * h, 8 * w)
            mask[:, 16:48, 24:56] = 1.0
            for noise_mask in (False, True):
                pos, neg, latent = nodes.InpaintModelConditioning().encode(f.positive, f.negative, pixels, vae, mask, noise_mask)
                inside = torch.nn.functional.interpolate(mask[:, None], size=(h, w), mode="area") > 0.5
                for sampler in ("euler", "euler_ancestral"):
                    d = (run_dk(f, 1.0, "step", latent, pos, neg, sampler) - ks(f.model, f, latent, pos, neg, sampler)).abs()
                    d = d[inside.expand_as(d)] if noise_mask else d
                    inpaint.append({"model": name, "noise_mask": noise_mask, "sampler": sampler, "d": f"{float(d.max()):.3g}"})
    return {"comfyui": version, "rows": rows, "inpaint": inpaint}


def row_line(r: dict) -> str:
    return (f"| {r['family']} | {r['comfyui']} | {r['latent']} | {r['params']} | {r['map0']} | {r['map1']} | {r['ramp']} "
            f"| {r['diffedit']} |")


def merge(results: list[dict]) -> str:
    """One table: every version a family ran on; a figure that differs between versions as "old; new"."""
    order, rows = [], {}
    for res in sorted(results, key=lambda r: tuple(int(x) for x in r["comfyui"].split(".") if x.isdigit())):
        for r in res["rows"]:
            if r["family"] not in order:
                order.append(r["family"])
            if "skipped" not in r:
                rows.setdefault(r["family"], []).append(r)
    lines = [HEADER]
    for name in order:
        if name in rows:
            merged = {key: "; ".join(dict.fromkeys(r[key] for r in rows[name])) for key in rows[name][0]}
            merged["comfyui"] = ", ".join(r["comfyui"] for r in rows[name])
            lines.append(row_line(merged))
    lines.append("")
    lines.append("| inpainting model | noise_mask | euler | euler_ancestral |\n|---|---|---|---|")
    inpaint = {}
    for res in results:
        for r in res["inpaint"]:
            inpaint.setdefault((r["model"], r["noise_mask"]), {}).setdefault(r["sampler"], set()).add(r["d"])
    for (model, noise_mask), by in inpaint.items():
        lines.append(f"| {model} | {'on' if noise_mask else 'off'} | {' / '.join(sorted(by['euler']))} | "
                     f"{' / '.join(sorted(by['euler_ancestral']))} |")
    return "\n".join(lines)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--merge", nargs="+", metavar="FILE", help="print one table from these --json files")
    args = parser.parse_args(argv)
    if args.merge:
        print(merge([json.load(open(p)) for p in args.merge]))
        return
    import common  # noqa: F401  (puts the tests' dde_world package on sys.path)
    from dde_world.families import NAMES

    result = measure(args.families or NAMES)
    print(HEADER)
    for r in result["rows"]:
        print(row_line(r) if "skipped" not in r else f"| {r['family']} | skipped: {r['skipped']} |")
    print("\n| inpainting model | noise_mask | sampler | map 1 vs KSampler (max abs diff; inside the mask with noise_mask) |")
    print("|---|---|---|---|")
    for r in result["inpaint"]:
        print(f"| {r['model']} | {r['noise_mask']} | {r['sampler']} | {r['d']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
