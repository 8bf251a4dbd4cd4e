"""The pack's real nodes (and ComfyUI's) on the learned digits model, batched. Tests and benchmarks.

Every edit runs through the node classes ComfyUI loaded (``env.node(...)``) with a batch of
pictures and one class per picture: a CONDITIONING whose tensor has the batch's rows, which
ComfyUI uses row by row.
"""

from __future__ import annotations

import torch

from . import digits

#: source class -> target class for the named pairs (3->8, 1->7, 5->6, 0->9 and back); 2 and 4 go to a random class
PAIRS = {3: 8, 8: 3, 1: 7, 7: 1, 5: 6, 6: 5, 0: 9, 9: 0}
STEPS = 25
CFG = 4.0


def targets(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for v in labels.tolist():
        if v in PAIRS:
            out.append(PAIRS[v])
        else:
            t = int(torch.randint(0, 9, (1,), generator=gen))
            out.append(t + 1 if t >= v else t)
    return torch.tensor(out, dtype=torch.int64)


def cond(labels) -> list:
    """One CONDITIONING for a batch: row i selects ``labels[i]`` (``-1``: the null class)."""
    return [[digits.one_hot(labels), {}]]


def null(b: int) -> list:
    return cond([-1] * b)


class Edits:
    """Batched calls of the nodes on the digits model. ``env``: ``locate.ComfyInProcess``."""

    def __init__(self, env, model=None):
        self.env = env
        self.model = model if model is not None else digits.make_model()

    # -- DiffEdit ------------------------------------------------------------------------------
    def mask(self, pictures, source, target, method="rescale", threshold=0.5, n=10, strength=0.5, seed=0,
             clamp_ratio=3.0, percentile=0.8):
        """DDE_DiffEditMask: (heat, mask, mask_area) for grey pictures ``(B,16,16)`` (query = target, reference = source)."""
        image = digits.to_image(pictures)
        out = self.env.run_node("DDE_DiffEditMask", model=self.model, query=cond(target),
                                latent={"samples": digits.encode(image)}, strength=strength, n=n, seed=seed, cfg=1.0,
                                threshold_method=method, threshold=threshold, clamp_ratio=clamp_ratio,
                                percentile=percentile, smooth=0.0, grow=0, batch_size=0, reference=cond(source),
                                image=image)
        return out[0], out[1], out[3]

    def diffedit(self, pictures, source, target, mask, r, steps=STEPS, cfg=CFG):
        """DDE_DiffEditEdit at encode ratio ``r``: decoded grey pictures."""
        latent = {"samples": digits.encode(pictures)}
        out = self.env.run_node("DDE_DiffEditEdit", model=self.model, query=cond(target), latent=latent, mask=mask,
                                steps=steps, encode_ratio=r, cfg=cfg, scheduler="normal", refine=2, invert=False,
                                reference=cond(source), negative=null(len(target)))[0]
        return digits.decode(out["samples"])[..., 0]

    # -- ComfyUI's KSampler (SDEdit, masked inpainting) and the pack's Differential KSampler ----------
    def ksampler(self, pictures, target, denoise, seed=0, steps=STEPS, cfg=CFG, model=None, noise_mask=None):
        latent = {"samples": digits.encode(pictures)}
        if noise_mask is not None:
            latent = self.env.nodes.NODE_CLASS_MAPPINGS["SetLatentNoiseMask"]().set_mask(latent, noise_mask)[0]
        out = self.env.nodes.NODE_CLASS_MAPPINGS["KSampler"]().sample(
            model or self.model, seed, steps, cfg, "euler", "normal", cond(target), null(len(target)), latent, denoise)[0]
        return digits.decode(out["samples"])[..., 0]

    def differential(self, pictures, target, change_map, mode, seed=0, steps=STEPS, cfg=CFG):
        latent = {"samples": digits.encode(pictures)}
        out = self.env.run_node("DDE_DifferentialKSampler", model=self.model, seed=seed, steps=steps, cfg=cfg,
                                sampler_name="euler", scheduler="normal", positive=cond(target),
                                negative=null(len(target)), latent_image=latent, denoise=1.0, change_map=change_map,
                                mode=mode, invert=False, strength=1.0, softness=0.0)[0]
        return digits.decode(out["samples"])[..., 0]

    def builtin_differential(self, pictures, target, change_map, seed=0, steps=STEPS, cfg=CFG):
        """ComfyUI's DifferentialDiffusion node + SetLatentNoiseMask + KSampler (denoise 1)."""
        patched = self.env.run_node("DifferentialDiffusion", model=self.model, strength=1.0)[0]
        return self.ksampler(pictures, target, 1.0, seed, steps, cfg, model=patched, noise_mask=change_map)

    def sample(self, labels, seed=0, steps=STEPS, cfg=CFG):
        """Class-conditional samples from noise (KSampler, denoise 1): grey pictures."""
        return self.ksampler(torch.zeros(len(labels), digits.SIDE, digits.SIDE), torch.as_tensor(labels), 1.0, seed, steps, cfg)


def accuracy(pictures, labels) -> float:
    return float((digits.classify(pictures) == torch.as_tensor(labels)).float().mean())


def distance(a, b) -> dict:
    """Per picture: L2 in pixel units (0..1 grey, 16 x 16) and the fraction of pixels changed by more than 0.1."""
    d = (a - b).flatten(1)
    return {"l2": d.norm(dim=1), "changed": (d.abs() > 0.1).float().mean(1)}


def relative_change_curve(source, edited, full, maps, bins: int = 16):
    """The realised change as a function of the map value, relative to a full edit (map 1, same seed).

    Pixels are binned by map value (``bins`` equal bins of 0..1); per bin, the change summed over
    the pixels and pictures divided by the full edit's change summed over the same pixels: the
    fraction of a full edit the map's value realises. Pooling over many pixels removes the digits'
    content (a blank corner changes under no map). Returns (bin map means, fractions) of bins with change.
    """
    change, whole = (edited - source).abs(), (full - source).abs()
    idx = (maps.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    xs, ys = [], []
    for b in range(bins):
        sel = idx == b
        denom = float(whole[sel].sum())
        if sel.any() and denom > 0:
            xs.append(float(maps[sel].mean()))
            ys.append(float(change[sel].sum()) / denom)
    return torch.tensor(xs, dtype=torch.float64), torch.tensor(ys, dtype=torch.float64)


def cam(source, edited, full, maps, bins: int = 16) -> float:
    """CAM: Pearson correlation of the map value and the fraction of a full edit realised (:func:`relative_change_curve`)."""
    x, y = relative_change_curve(source, edited, full, maps, bins)
    if len(x) < 2:
        return float("nan")
    return float(torch.corrcoef(torch.stack([x, y]))[0, 1])
