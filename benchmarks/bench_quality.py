"""Edit quality on a learned model: the DiffEdit and Differential Diffusion papers' protocols, small.

The model is ``tests/dde_world/digits.py`` (a class-conditional eps UNet trained on scikit-learn's
digits, 16x16 pictures, 4x8x8 pixel-unshuffle latents, ComfyUI's SD1.5 discrete schedule); it
is trained on the first run (a few minutes on CPU) and cached in ``~/.cache/dde``. The judge is an
RBF SVC on the same pictures. Every edit runs the real nodes in-process (DDE_DiffEditMask,
DDE_DiffEditEdit, DDE_DifferentialKSampler, ComfyUI's KSampler, SetLatentNoiseMask and
DifferentialDiffusion); sources are held-out digits (``test`` split), tuning uses the ``tune`` split.

1. DiffEdit vs SDEdit (KSampler img2img at denoise r, target class, no mask) vs DiffEdit with a
   full mask, at encode ratios r: target-class accuracy, L2 distance to the source (pixels 0..1),
   fraction of pixels changed by more than 0.1. Then every threshold method at r = 0.7.
2. Differential Diffusion adherence: gradient, radial and step change maps, the pack's three
   modes, ComfyUI's DifferentialDiffusion + SetLatentNoiseMask, and plain masked inpainting with
   the binarised map. CAM = Pearson correlation of the map value and the fraction of a full edit
   (same method, map 1, same seed) realised there, pixels pooled over the digits in 16 bins of map
   value (``digits_edits.cam``: a digit's blank corners change under no map, pooling removes that);
   also the plain per-picture correlation of map and change (content-limited, the pack's
   ``correlation``) and DAM = the pack's ``distance`` (calibrated change vs map, lower is better).
3. Mask quality vs n draws and noise strength: area, IoU with the top-area pixels where the two
   classes' mean pictures differ most, and IoU between two seeds (stability).

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_quality.py [--quick] \
        [--out quality.json] [--md quality.md] [--png-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import common
from dde_world.probes import iou  # noqa: E402  (tests/ is on the path through common)

R_FULL = (0.3, 0.5, 0.7, 0.9)
METHOD_ROWS = [("rescale", 0.5), ("minmax", 0.5), ("clamp", 0.5), ("otsu", 0.5), ("percentile", 0.5), ("minmax", 0.2)]
QUANTILES = (0.9, 0.92, 0.95, 0.98)


def mean(t) -> float:
    return float(t.float().mean())


def edit_scores(E, edited, pictures, target) -> dict:
    d = E.distance(edited, pictures)
    return {"accuracy": E.accuracy(edited, target), "l2": mean(d["l2"]), "changed": mean(d["changed"])}


# -- 1. DiffEdit ----------------------------------------------------------------------------------

def section_diffedit(ed, E, torch, pictures, source, target, rs) -> tuple[dict, dict]:
    heat, mask, area = ed.mask(pictures, source, target)
    full = torch.ones_like(mask)
    rows, examples = {}, {"source": pictures[:8], "mask": mask[:8], "heat": heat[:8]}
    for r in rs:
        de = ed.diffedit(pictures, source, target, mask, r)
        sd = ed.ksampler(pictures, target, r)
        fm = ed.diffedit(pictures, source, target, full, r)
        cells = torch.nn.functional.avg_pool2d(mask.unsqueeze(1), 2)[:, 0] == 0   # latent cells without mask
        outside = cells.repeat_interleave(2, 1).repeat_interleave(2, 2)
        rows[str(r)] = {
            "diffedit": {**edit_scores(E, de, pictures, target), "mask_area": area,
                         "max_change_outside_mask": float((de - pictures).abs()[outside].amax())},
            "sdedit": edit_scores(E, sd, pictures, target),
            "diffedit_full_mask": edit_scores(E, fm, pictures, target),
        }
        if abs(r - 0.7) < 1e-9:
            examples.update(diffedit=de[:8], sdedit=sd[:8])
    rows["no_edit"] = edit_scores(E, pictures, pictures, target)
    return rows, examples


def section_thresholds(ed, E, core, pictures, source, target, r) -> dict:
    sd = edit_scores(E, ed.ksampler(pictures, target, r), pictures, target)
    out = {"sdedit": sd}
    for method, th in METHOD_ROWS:
        heat, mask, area = ed.mask(pictures, source, target, method, th)
        s = edit_scores(E, ed.diffedit(pictures, source, target, mask, r), pictures, target)
        out[f"{method}@{th}"] = {**s, "mask_area": area, "l2_vs_sdedit": s["l2"] / sd["l2"]}
    return out


def section_tuning(ed, E, core, pictures, source, target, r) -> dict:
    """The outlier quantile of ``rescale`` x the threshold, on the tuning split."""
    sd = edit_scores(E, ed.ksampler(pictures, target, r), pictures, target)
    keep = core.OUTLIER_QUANTILE
    out = {"sdedit": sd}
    try:
        for q in QUANTILES:
            core.OUTLIER_QUANTILE = q
            for th in (0.4, 0.5):
                heat, mask, area = ed.mask(pictures, source, target, "rescale", th)
                s = edit_scores(E, ed.diffedit(pictures, source, target, mask, r), pictures, target)
                out[f"q{q}@{th}"] = {**s, "mask_area": area, "l2_vs_sdedit": s["l2"] / sd["l2"]}
    finally:
        core.OUTLIER_QUANTILE = keep
    return out


# -- 2. Differential Diffusion -----------------------------------------------------------------------

def change_maps(torch, side):
    ys, xs = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    radial = (1 - ((xs - 0.5) ** 2 + (ys - 0.5) ** 2).sqrt() / 0.5).clamp(0, 1)
    step = torch.zeros(side, side)            # 0 | 0.5 | 1 in bands on latent-cell (2-pixel) boundaries
    step[:, 6:10] = 0.5
    step[:, 10:] = 1.0
    return {"gradient": xs.clone(), "radial": radial, "step": step}


def section_differential(ed, E, torch, metrics, pictures, target) -> dict:
    b = len(target)
    images = E.digits.to_image(pictures)
    runs = {f"pack_{mode}": (lambda maps, mode=mode: ed.differential(pictures, target, maps, mode))
            for mode in ("step", "denoise", "timestep")}
    runs["builtin_DifferentialDiffusion"] = lambda maps: ed.builtin_differential(pictures, target, maps)
    runs["inpaint_binarised"] = lambda maps: ed.ksampler(pictures, target, 1.0, noise_mask=(maps > 0.5).float())
    ones = torch.ones(b, *pictures.shape[1:])
    full = {method: fn(ones) for method, fn in runs.items()}
    out = {}
    for name, m in change_maps(torch, pictures.shape[-1]).items():
        maps = m.expand(b, *m.shape).contiguous()
        out[name] = {}
        for method, fn in runs.items():
            res = fn(maps)
            adh = metrics.adherence(images, E.digits.to_image(res), maps)
            xs, fractions = E.relative_change_curve(pictures, res, full[method], maps)
            out[name][method] = {"cam": E.cam(pictures, res, full[method], maps),
                                 "cam_per_picture": metrics.summary(adh["correlation"]),
                                 "dam": metrics.summary(adh["distance"]), "leakage": metrics.summary(adh["leakage"]),
                                 "curve": {"map": xs.tolist(), "fraction_of_full_edit": fractions.tolist()}}
    return out


# -- 3. mask quality ---------------------------------------------------------------------------------

def class_difference_region(torch, digits, source, target, mask):
    """Per picture: the top-``area`` pixels of |mean(target class) - mean(source class)| (train split)."""
    x, y, splits = digits.dataset()
    tr = splits["train"]
    means = torch.stack([x[tr][y[tr] == c].mean(0) for c in range(10)])
    diff = (means[target] - means[source]).abs().flatten(1)
    k = mask.flatten(1).sum(1).long().clamp(min=1)
    order = diff.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(diff.shape[1]).expand_as(order))
    return (ranks < k[:, None]).float().view_as(mask)


def section_masks(ed, E, torch, core, pictures, source, target, ns, strengths) -> dict:
    out = {}
    for s in strengths:
        for n in ns:
            _, m0, area = ed.mask(pictures, source, target, n=n, strength=s, seed=0)
            _, m1, _ = ed.mask(pictures, source, target, n=n, strength=s, seed=1)
            region = class_difference_region(torch, E.digits, source, target, m0)
            iou_region = [iou(a, b) for a, b in zip(m0, region)]
            iou_seed = [iou(a, b) for a, b in zip(m0, m1)]
            out[f"strength {s}, n {n}"] = {"strength": s, "n": n, "mask_area": area,
                                          "iou_class_difference": sum(iou_region) / len(iou_region),
                                          "iou_between_seeds": sum(iou_seed) / len(iou_seed)}
    return out


# -- pictures (PIL) ----------------------------------------------------------------------------------

def examples_png(path, ex, scale=6):
    from PIL import Image, ImageDraw

    cols = ["source", "mask", "diffedit", "sdedit"]
    n = ex["source"].shape[0]
    side = ex["source"].shape[-1] * scale
    pad, top = 4, 16
    img = Image.new("RGB", (len(cols) * (side + pad) + pad, top + n * (side + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for j, c in enumerate(cols):
        draw.text((pad + j * (side + pad), 2), c, fill=(0, 0, 0))
        for i in range(n):
            a = (ex[c][i].clamp(0, 1).numpy() * 255).astype("uint8")
            tile = Image.fromarray(a).resize((side, side), Image.NEAREST).convert("RGB")
            img.paste(tile, (pad + j * (side + pad), top + pad + i * (side + pad)))
    img.save(path)


def tradeoff_png(path, rows, rs, w=420, h=300):
    """Target accuracy (y) against L2 distance (x) for the three methods across r."""
    from PIL import Image, ImageDraw

    colours = {"diffedit": (200, 30, 30), "sdedit": (30, 60, 200), "diffedit_full_mask": (40, 150, 40)}
    pts = {k: [(rows[str(r)][k]["l2"], rows[str(r)][k]["accuracy"]) for r in rs] for k in colours}
    xmax = max(x for v in pts.values() for x, _ in v) * 1.1
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 40, h - 30, w - 10, 10

    def at(x, y):
        return x0 + (x1 - x0) * x / xmax, y0 - (y0 - y1) * y

    d.line([(x0, y0), (x1, y0)], fill=(0, 0, 0))
    d.line([(x0, y0), (x0, y1)], fill=(0, 0, 0))
    d.text((x1 - 150, y0 + 8), "L2 distance to the source", fill=(0, 0, 0))
    d.text((2, y1), "acc", fill=(0, 0, 0))
    for v in (0.0, 0.5, 1.0):
        d.text((8, at(0, v)[1] - 5), f"{v:.1f}", fill=(0, 0, 0))
    for i, (k, c) in enumerate(colours.items()):
        xy = [at(*p) for p in pts[k]]
        d.line(xy, fill=c, width=2)
        for (px, py), r in zip(xy, rs):
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=c)
            d.text((px + 4, py - 12), f"{r}", fill=c)
        d.text((x0 + 10, y1 + 4 + 12 * i), k, fill=c)
    img.save(path)


# -- Markdown ----------------------------------------------------------------------------------------

def markdown(res) -> str:
    L = [f"Device: {res['device']}. Model: {res['model']['parameters']} parameters, judge held-out accuracy "
         f"{res['model']['judge_accuracy']:.3f}, class-conditional sample accuracy {res['model']['sample_accuracy']:.3f}; "
         f"{res['sources']} held-out source digits, {res['settings']}.", ""]
    L += ["| r | method | target accuracy | L2 to source | pixels changed > 0.1 |", "|---|---|---|---|---|"]
    for r in res["rs"]:
        for k in ("diffedit", "sdedit", "diffedit_full_mask"):
            v = res["diffedit"][str(r)][k]
            L.append(f"| {r} | {k} | {v['accuracy']:.2f} | {v['l2']:.2f} | {v['changed']:.3f} |")
    v = res["diffedit"]["no_edit"]
    L += [f"| – | no edit | {v['accuracy']:.2f} | 0 | 0 |", ""]
    L += ["| DiffEdit Mask setting (r = 0.7) | target accuracy | L2 to source | × SDEdit's L2 | mask area |",
          "|---|---|---|---|---|"]
    for k, v in res["thresholds"].items():
        if k == "sdedit":
            continue
        name = k.replace("@", ", threshold ") + (" (default)" if k == "rescale@0.5" else "")
        L.append(f"| {name} | {v['accuracy']:.2f} | {v['l2']:.2f} | {v['l2_vs_sdedit']:.2f} | {v['mask_area']:.2f} |")
    v = res["thresholds"]["sdedit"]
    L += [f"| SDEdit (no mask) | {v['accuracy']:.2f} | {v['l2']:.2f} | 1.00 | – |", ""]
    if "tuning" in res:
        L += ["Tuning split (rescale's outlier quantile × threshold, r = 0.7):", "",
              "| quantile, threshold | target accuracy | × SDEdit's L2 | mask area |", "|---|---|---|---|"]
        for k, v in res["tuning"].items():
            if k != "sdedit":
                L.append(f"| {k[1:].replace('@', ', ')} | {v['accuracy']:.2f} | {v['l2_vs_sdedit']:.2f} | {v['mask_area']:.2f} |")
        L.append("")
    L += ["| map | method | CAM (vs full edit, pooled) | per-picture correlation | DAM | leakage (map 0) |",
          "|---|---|---|---|---|---|"]
    for name, d in res["differential"].items():
        for k, v in d.items():
            L.append(f"| {name} | {k} | {v['cam']:.3f} | {v['cam_per_picture']:.3f} | {v['dam']:.3f} | "
                     f"{v['leakage']:.4f} |")
    L += ["", "| strength | n | mask area | IoU with class difference | IoU between seeds |", "|---|---|---|---|---|"]
    for v in res["masks"].values():
        L.append(f"| {v['strength']} | {v['n']} | {v['mask_area']:.2f} | {v['iou_class_difference']:.2f} | "
                 f"{v['iou_between_seeds']:.2f} |")
    return "\n".join(L) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer digits, r and settings (about 3 minutes once cached)")
    p.add_argument("--out", default=None, help="JSON file with every figure")
    p.add_argument("--md", default=None, help="Markdown tables (default: printed)")
    p.add_argument("--png-dir", default=None, help="folder for quality_examples.png and quality_tradeoff.png")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the tiny model's small batches gain nothing "
                   "from more, and on a shared CPU more threads were 14x slower)")
    a = p.parse_args()

    t0 = time.time()
    env = common.comfy()
    import torch

    from dde_world import digits, digits_edits as E

    torch.set_num_threads(a.threads)

    core = env.module("nodes.core.diffedit_math")
    metrics = env.module("nodes.core.metrics")
    torch.manual_seed(0)
    ed = E.Edits(env)
    x, y, splits = digits.dataset()
    n_src = 40 if a.quick else 120
    n_dd = 16 if a.quick else 50
    rs = (0.5, 0.7) if a.quick else R_FULL
    test, tune = splits["test"][:n_src], splits["tune"][: (40 if a.quick else len(splits["tune"]))]
    res = {"device": common.device_name(),
           "quick": a.quick, "rs": list(rs), "sources": n_src,
           "settings": f"{E.STEPS} steps, cfg {E.CFG}, DiffEdit Mask n 10 strength 0.5, refine 2, seed 0"}
    with torch.inference_mode():
        labels = torch.arange(10).repeat(10 if a.quick else 20)
        res["model"] = {"parameters": sum(p.numel() for p in digits.net_of(ed.model).parameters()),
                        "judge_accuracy": digits.judge_accuracy("test"),
                        "sample_accuracy": E.accuracy(ed.sample(labels, seed=1), labels), "samples": len(labels),
                        "outlier_quantile": core.OUTLIER_QUANTILE}
        pictures, source = x[test], y[test]
        target = E.targets(source)
        res["diffedit"], examples = section_diffedit(ed, E, torch, pictures, source, target, rs)
        res["thresholds"] = section_thresholds(ed, E, core, pictures, source, target, 0.7)
        if not a.quick:
            tp, ts = x[tune], y[tune]
            res["tuning"] = section_tuning(ed, E, core, tp, ts, E.targets(ts, seed=1), 0.7)
        res["differential"] = section_differential(ed, E, torch, metrics, pictures[:n_dd], target[:n_dd])
        ns, strengths = ((1, 10), (0.5,)) if a.quick else ((1, 3, 10, 30), (0.3, 0.5, 0.7))
        res["masks"] = section_masks(ed, E, torch, core, pictures[:n_dd], source[:n_dd], target[:n_dd], ns, strengths)
    res["seconds"] = time.time() - t0
    md = markdown(res)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    print(md)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    if a.png_dir:
        os.makedirs(a.png_dir, exist_ok=True)
        examples_png(os.path.join(a.png_dir, "quality_examples.png"), examples)
        tradeoff_png(os.path.join(a.png_dir, "quality_tradeoff.png"), res["diffedit"], rs)
    print(f"[bench_quality] done ({'quick' if a.quick else 'full'})")


if __name__ == "__main__":
    main()
