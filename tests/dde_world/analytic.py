"""An analytic test world: synthetic scenes and their exact ideal denoiser.

Each *condition* is a Gaussian mixture over whole latents: components ``N(mu_k, tau_k^2 K_k)``
with weights ``pi_k`` (``K = I``, or a smooth low-pass covariance diagonal in the Fourier basis). For a noisy latent ``x = a x0 + b eps`` (eps-prediction: ``a = 1,
b = sigma``; rectified flow: ``a = 1 - sigma, b = sigma``) the posterior mean is exact:

    w_k  ∝ pi_k N(x; a mu_k, a^2 tau_k^2 K_k + b^2 I)
    E[x0 | x] = sum_k w_k [ mu_k + a tau_k^2 K_k (a^2 tau_k^2 K_k + b^2 I)^-1 (x - a mu_k) ]

so every quantity a test needs — where DiffEdit's two predictions differ, what a sampler
converges to, how much a pixel moves when it is freed at a given noise level — has a known
right answer. Latents have 4 channels: RGB in -1..1 plus a texture channel, at 1/8 of the
picture size; :meth:`AnalyticWorld.decode` turns one into a picture.

Conditions are selected by a conditioning tensor ``(1, 77, 768)`` whose first token carries a
one-hot code (:meth:`AnalyticWorld.context`); an all-zero context is the unconditional
mixture of every component.

Pure torch; no ComfyUI import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

CHANNELS = 4
TOKENS, WIDTH = 77, 768


@dataclass
class Scene:
    """Two conditions that differ only inside ``region``.

    ``reference``/``query``: clean latents ``(4,h,w)``; ``region``: bool ``(h,w)``, the
    ground truth of where the two conditions differ; ``backgrounds``: extra background
    variants that both conditions share (they make the posterior a real mixture).
    """

    name: str
    reference: torch.Tensor
    query: torch.Tensor
    region: torch.Tensor
    variants: list = field(default_factory=list)


def _grid(h, w):
    y = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    x = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    return torch.meshgrid(y, x, indexing="ij")


def _background(h, w, top, bottom, texture_freq=3.0, shift=0.0):
    yy, xx = _grid(h, w)
    top = torch.tensor(top).view(3, 1, 1)
    bottom = torch.tensor(bottom).view(3, 1, 1)
    rgb = top * (1 - yy) + bottom * yy
    tex = 0.3 * torch.sin(2 * math.pi * (texture_freq * xx + shift)) * torch.cos(2 * math.pi * texture_freq * yy)
    return torch.cat([rgb + 0.1 * shift, tex.unsqueeze(0)], 0)


def _paint(latent, region, rgb, tex=0.0):
    out = latent.clone()
    colour = torch.tensor(list(rgb) + [tex]).view(4, 1, 1)
    return torch.where(region.unsqueeze(0), colour.expand_as(out), out)


def _disk(h, w, cy, cx, r):
    yy, xx = _grid(h, w)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _box(h, w, y0, x0, y1, x1):
    yy, xx = _grid(h, w)
    return (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)


def smooth_spectrum(h: int, w: int, cutoff: float = 0.07) -> torch.Tensor:
    """Per-frequency variance of a smooth Gaussian field (Gaussian low-pass, mean 1, float64)."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, -1)
    k = torch.exp(-(fy ** 2 + fx ** 2) / (2 * cutoff ** 2))
    return k / k.mean()


def make_scenes(h: int = 32, w: int = 32) -> list[Scene]:
    """Four scenes: an object swap, a recoloured stripe, one of two objects, a small object."""
    scenes = []
    sky = _background(h, w, (-0.2, 0.1, 0.8), (0.1, 0.6, -0.3))
    alt = _background(h, w, (-0.1, 0.2, 0.7), (0.2, 0.5, -0.2), shift=0.35)

    disk = _disk(h, w, 0.55, 0.5, 0.22)
    square = _box(h, w, 0.36, 0.31, 0.74, 0.69)
    ref, qry = _paint(sky, disk, (0.9, -0.8, -0.8), 0.2), _paint(sky, square, (0.9, 0.9, -0.9), -0.2)
    scenes.append(Scene("disk-to-square", ref, qry, (ref != qry).any(0),
                        [(_paint(alt, disk, (0.9, -0.8, -0.8), 0.2), _paint(alt, square, (0.9, 0.9, -0.9), -0.2))]))

    stripe = _box(h, w, 0.0, 0.4, 1.0, 0.62)
    ref, qry = _paint(alt, stripe, (-0.7, -0.7, 0.9)), _paint(alt, stripe, (0.8, 0.3, -0.6))
    scenes.append(Scene("recolour-stripe", ref, qry, (ref != qry).any(0),
                        [(_paint(sky, stripe, (-0.7, -0.7, 0.9)), _paint(sky, stripe, (0.8, 0.3, -0.6)))]))

    left, right = _disk(h, w, 0.5, 0.27, 0.16), _disk(h, w, 0.5, 0.73, 0.16)
    both = _paint(sky, left, (0.9, 0.9, 0.9), 0.1)
    ref, qry = _paint(both, right, (-0.9, 0.8, -0.5)), _paint(both, right, (0.7, -0.6, 0.9))
    scenes.append(Scene("one-of-two", ref, qry, (ref != qry).any(0),
                        [(_paint(_paint(alt, left, (0.9, 0.9, 0.9), 0.1), right, (-0.9, 0.8, -0.5)),
                          _paint(_paint(alt, left, (0.9, 0.9, 0.9), 0.1), right, (0.7, -0.6, 0.9)))]))

    small = _box(h, w, 0.2, 0.6, 0.4, 0.8)
    ref, qry = _paint(sky, small, (-0.8, 0.9, 0.2), 0.3), _paint(sky, small, (0.9, -0.9, 0.6), -0.3)
    scenes.append(Scene("small-object", ref, qry, (ref != qry).any(0),
                        [(_paint(alt, small, (-0.8, 0.9, 0.2), 0.3), _paint(alt, small, (0.9, -0.9, 0.6), -0.3))]))
    return scenes


@dataclass
class TwoEdits:
    """A scene with two objects and an instruction for each (:meth:`AnalyticWorld.add_two_edits`).

    ``reference``: the condition of the picture as it is; ``edit_a`` / ``edit_b``: conditions whose posterior
    differs from the reference only on object A / only on object B; ``both``: both objects edited (so the
    unconditional mixture, which cfg guides against, knows the joint result too). ``latent``: the picture
    ``(1,4,h,w)``; ``target``: both objects as their instructions say; ``region_a`` / ``region_b``: bool ``(h,w)``.
    """

    reference: int
    edit_a: int
    edit_b: int
    both: int
    latent: torch.Tensor
    target: torch.Tensor
    region_a: torch.Tensor
    region_b: torch.Tensor


class AnalyticWorld:
    """Conditions, their Gaussian-mixture priors, and the exact posterior mean.

    Condition ids: ``2 s`` is scene ``s``'s reference, ``2 s + 1`` its query; each has the
    scene's main latent and its background variants as components, of prior width ``tau``.
    Then, per scene, a *sharp* condition (the query latent exactly, ``tau = 0``) and a *graded*
    one (a broad prior ``graded_tau`` around the query, so how far a pixel moves grows with the
    noise level it is freed at). More can be added with :meth:`add_condition`.
    """

    def __init__(self, h: int = 32, w: int = 32, tau: float = 0.05, variant_weight: float = 0.3, graded_tau: float = 0.5,
                 smooth_tau: float = 0.4):
        self.h, self.w = h, w
        self.scenes = make_scenes(h, w)
        self.components: list[list[tuple[torch.Tensor, float, float]]] = []
        for s in self.scenes:
            for which in (0, 1):
                main = s.reference if which == 0 else s.query
                comps = [(main, tau, 1.0)]
                comps += [(pair[which], tau, variant_weight) for pair in s.variants]
                self.components.append(comps)
        for s in self.scenes:   # ids 2n + s (n scenes): the query latent exactly (posterior = target at every level)
            self.add_condition([(s.query, 0.0, 1.0)])
        for s in self.scenes:   # ids 3n + s: a broad prior around the query (change grows with noise level)
            self.add_condition([(s.query, graded_tau, 1.0)])
        spectrum = smooth_spectrum(h, w)
        for s in self.scenes:   # ids 4n + s: a broad, spatially smooth prior around the query (pictures for people)
            self.add_condition([(s.query, smooth_tau, 1.0, spectrum)])

    # -- conditions ------------------------------------------------------------------
    @property
    def n_conditions(self) -> int:
        return len(self.components)

    def add_condition(self, components) -> int:
        """Add a condition of ``(mu, tau, weight)`` or ``(mu, tau, weight, spectrum)`` components; returns its id."""
        assert len(self.components) < WIDTH
        self.components.append([(c[0].to(torch.float32), float(c[1]), float(c[2]), *c[3:]) for c in components])
        return len(self.components) - 1

    def reference_id(self, scene: int) -> int:
        return 2 * scene

    def query_id(self, scene: int) -> int:
        return 2 * scene + 1

    def sharp_id(self, scene: int) -> int:
        """Condition whose posterior mean is scene ``scene``'s query latent at every noise level."""
        return 2 * len(self.scenes) + scene

    def smooth_id(self, scene: int) -> int:
        """Like :meth:`graded_id` with spatially smooth (low-frequency) variation: readable pictures."""
        return 4 * len(self.scenes) + scene

    def graded_id(self, scene: int) -> int:
        """Condition with a broad Gaussian prior around the query: later freedom, smaller change."""
        return 3 * len(self.scenes) + scene

    ROLES = ("reference", "query", "sharp", "graded", "smooth", "unconditional")

    def role_id(self, scene: int, role: str) -> int | None:
        return {"reference": self.reference_id, "query": self.query_id, "sharp": self.sharp_id,
                "graded": self.graded_id, "smooth": self.smooth_id}.get(role, lambda s: None)(scene)

    def latent(self, scene: int, role: str = "reference") -> torch.Tensor:
        """Clean latent ``(1,4,h,w)`` of a scene's reference or query."""
        s = self.scenes[scene]
        return (s.query if role in ("query", "sharp", "graded", "smooth") else s.reference).unsqueeze(0).clone()

    def context(self, cond_id: int | None) -> torch.Tensor:
        """The ``(1,77,768)`` conditioning tensor that selects a condition (None: unconditional)."""
        ctx = torch.zeros(1, TOKENS, WIDTH)
        if cond_id is not None:
            ctx[0, 0, cond_id] = 1.0
        return ctx

    def decode_context(self, context: torch.Tensor) -> list[int | None]:
        """Condition id per batch row of a context tensor (None = unconditional)."""
        head = context[:, 0, : self.n_conditions].float()
        best = head.argmax(dim=1)
        on = head.max(dim=1).values > 0.5
        return [int(b) if o else None for b, o in zip(best.tolist(), on.tolist())]

    def _mixture(self, cond_id):
        if cond_id is None:
            comps = [c for group in self.components for c in group]
        else:
            comps = self.components[cond_id]
        total = sum(c[2] for c in comps)
        return [(c[0], c[1], c[2] / total, c[3] if len(c) > 3 else None) for c in comps]

    def add_two_edits(self, tau: float = 0.05, variant_weight: float = 0.3) -> TwoEdits:
        """Add a two-object scene's conditions: the picture as it is, and one instruction per object (a disk on the
        left turns red, a box on the right turns blue), each a mixture over two backgrounds like the scenes'."""
        h, w = self.h, self.w
        a, b = _disk(h, w, 0.5, 0.27, 0.17), _box(h, w, 0.3, 0.58, 0.7, 0.9)
        backgrounds = (_background(h, w, (-0.2, 0.1, 0.8), (0.1, 0.6, -0.3)),
                       _background(h, w, (-0.1, 0.2, 0.7), (0.2, 0.5, -0.2), shift=0.35))

        def picture(bg, a_colour, b_colour):
            return _paint(_paint(bg, a, *a_colour), b, *b_colour)

        white, green = ((0.9, 0.9, 0.9), 0.1), ((-0.9, 0.8, -0.5), -0.1)
        red, blue = ((0.9, -0.8, -0.7), 0.3), ((-0.6, -0.4, 0.95), -0.3)
        ids = []
        for colours in ((white, green), (red, green), (white, blue), (red, blue)):
            main, variant = (picture(bg, *colours) for bg in backgrounds)
            ids.append(self.add_condition([(main, tau, 1.0), (variant, tau, variant_weight)]))
        return TwoEdits(*ids, picture(backgrounds[0], white, green).unsqueeze(0),
                        picture(backgrounds[0], red, blue).unsqueeze(0), a, b)

    # -- the ideal denoiser ----------------------------------------------------------
    @staticmethod
    def _component(x, mu, tau, a, b, spectrum):
        """(log N(x; a mu, a^2 tau^2 K + b^2 I) up to a shared constant, E[x0 | x, component]).

        ``spectrum`` None: K = I. Otherwise K is diagonal in the orthonormal 2-D Fourier basis with
        per-frequency variances ``spectrum`` (h,w): smooth, spatially correlated latents.
        """
        d = x - a * mu
        if spectrum is None:
            var = a * a * tau * tau + b * b
            logp = -0.5 * float((d * d).sum()) / var - 0.5 * d.numel() * math.log(var)
            return logp, mu + (a * tau * tau / var) * d
        X = torch.fft.fft2(d, norm="ortho")
        var = a * a * tau * tau * spectrum + b * b
        logp = -0.5 * float(((X.real ** 2 + X.imag ** 2) / var).sum()) - 0.5 * d.shape[0] * float(torch.log(var).sum())
        return logp, mu + torch.fft.ifft2((a * tau * tau * spectrum / var) * X, norm="ortho").real

    def posterior_mean(self, x: torch.Tensor, sigma: torch.Tensor, cond_ids, family: str = "eps") -> torch.Tensor:
        """Exact ``E[x0 | x]`` for each batch row. ``sigma``: one value per row (or one for all)."""
        out = torch.empty_like(x)
        sig = sigma.reshape(-1).to(torch.float64)
        if sig.numel() == 1:
            sig = sig.expand(x.shape[0])
        for i in range(x.shape[0]):
            s = float(sig[i])
            a, b = (1.0 - s, s) if family == "flow" else (1.0, s)
            xi = x[i].to(torch.float64)
            logws, means = [], []
            for mu, tau, weight, spectrum in self._mixture(cond_ids[i]):
                logp, mean = self._component(xi, mu.to(torch.float64), float(tau), a, b, spectrum)
                logws.append(math.log(weight) + logp)
                means.append(mean)
            w = torch.softmax(torch.tensor(logws, dtype=torch.float64), dim=0)
            out[i] = (w.view(-1, 1, 1, 1) * torch.stack(means)).sum(0).to(x.dtype)
        return out

    # -- pictures ----------------------------------------------------------------------
    def decode(self, latent: torch.Tensor, scale: int = 8) -> torch.Tensor:
        """Latent ``(B,4,h,w)`` → IMAGE ``(B,8h,8w,3)`` in 0..1 (RGB channels, nearest upscale)."""
        rgb = ((latent[:, :3].float() + 1.0) / 2.0).clamp(0, 1)
        rgb = rgb.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        return rgb.permute(0, 2, 3, 1).contiguous()

    def encode(self, image: torch.Tensor, scale: int = 8) -> torch.Tensor:
        """IMAGE ``(B,H,W,3)`` → latent ``(B,4,H/8,W/8)`` (area average; texture channel 0)."""
        rgb = image.permute(0, 3, 1, 2).float() * 2.0 - 1.0
        rgb = torch.nn.functional.avg_pool2d(rgb, scale)
        return torch.cat([rgb, torch.zeros_like(rgb[:, :1])], 1)


class AnalyticVAE:
    """A stand-in for ComfyUI's VAE object (``encode``/``decode``) for the analytic world's latents."""

    downscale_ratio = 8
    latent_channels = CHANNELS

    def __init__(self, world: AnalyticWorld):
        self.world = world

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.world.decode(samples)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.world.encode(pixels[..., :3])
