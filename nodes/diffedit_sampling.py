"""DiffEdit on ComfyUI's own sampling stack.

Both parts run as ``Sampler`` objects driven by a ``CFGGuider``: ComfyUI loads the model,
processes the conditioning (ControlNets, hooks, area/mask conds) and runs every wrapper other
packs installed, exactly as for sampling; the sampler then evaluates the model itself.

* :class:`HeatSampler` — mask estimation. The guider's ``positive`` is the query and
  ``negative`` the reference (``uncond`` joins when cfg != 1). ``n`` draws of noise at one
  level go through :func:`comfy.samplers.calc_cond_batch` in as few calls as ``batch_size``
  allows; the mean |x0 difference| lands in a per-run holder (no state on node classes).
* :class:`DiffEditSampler` — deterministic inversion of the input latent along the reversed
  schedule with the reference conditioning (optionally refined by fixed-point iterations), then a
  DDIM decode with the guider (query, CFG) that puts the inverted latent of exactly the current
  level back outside the mask after every step.
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.sample
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
from tqdm.auto import tqdm   # ComfyUI's console progress bars (its samplers use it too)

from .core import diffedit_math as core
from .core import maps as maps_core
from .core.errors import InputError
from .comfy_glue import ksampler_sigmas, latent_preview_callback, output_latent
from .latent_space import fitted_latent


def zero_out(conditioning):
    """ConditioningZeroOut: the same structure with every tensor zeroed (the unconditional stand-in)."""
    out = []
    for tensor, extra in conditioning:
        extra = dict(extra)
        for key in ("pooled_output",):
            if isinstance(extra.get(key), torch.Tensor):
                extra[key] = torch.zeros_like(extra[key])
        out.append([torch.zeros_like(tensor), extra])
    return out


def scalings(model_sampling, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``x = a x0 + b eps`` at ``sigma``, read off the model's own noise scaling."""
    one = torch.ones(1, dtype=torch.float32, device=sigma.device)
    zero = torch.zeros(1, dtype=torch.float32, device=sigma.device)
    s = sigma.reshape(1).to(torch.float32)
    return model_sampling.noise_scaling(s, zero, one.clone()), model_sampling.noise_scaling(s, one.clone(), zero.clone())


def noise_level(model, strength: float) -> float:
    """The noise level of ``strength`` (fraction of the model's noise range; 0.5 = half-way timestep)."""
    if not 0.0 < strength <= 1.0:
        raise InputError("strength", "a noise strength in (0, 1]", repr(strength))
    ms = model.get_model_object("model_sampling")
    sigma = float(ms.percent_to_sigma(1.0 - float(strength)))
    return min(sigma, float(ms.sigma_max))


class Holder:
    """Per-run result slot (filled by a sampler inside the sampling call)."""

    heat: torch.Tensor | None = None


#: the guider's keys of the distinct conditionings of a heat estimation, in order (then ``cond_2``, ``cond_3``, ...):
#: a single pair is the query as ``positive`` and the reference as ``negative``, as a CFGGuider is given them (the
#: key is the ``prompt_type`` a model's extra conds see: the SDXL refiner scores a ``negative`` lower)
COND_KEYS = ("positive", "negative")
UNCOND_KEY = "uncond"


def cond_key(j: int) -> str:
    return COND_KEYS[j] if j < len(COND_KEYS) else f"cond_{j}"


class HeatSampler(comfy.samplers.Sampler):
    """Mean |x0(query) - x0(reference)| of ``pairs`` (index pairs into the guider's conds ``keys``) over ``n`` draws.

    Every distinct conditioning is evaluated once per draw, all of them on the same noise draws, through
    ``calc_cond_batch`` in chunks of ``batch_size`` evaluations; the uncond (cfg != 1) is the last key.
    """

    def __init__(self, n: int, seed: int, batch_size: int, cfg: float, holder: Holder, keys=COND_KEYS,
                 pairs=((0, 1),)):
        self.n, self.seed, self.batch_size, self.cfg, self.holder = int(n), int(seed), int(batch_size), float(cfg), holder
        self.keys, self.pairs = tuple(keys), tuple(pairs)

    def _auto_batch(self, inner, latent, per_draw: int) -> int:
        free = comfy.model_management.get_free_memory(latent.device)

        def fits(evaluations: int) -> bool:
            return inner.memory_required([evaluations * latent.shape[0], *latent.shape[1:]]) * 1.5 < free

        return core.auto_batch(self.n, per_draw, latent.device.type, fits)

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        inner = model_wrap.inner_model
        options = extra_args["model_options"]
        conds = [model_wrap.conds[key] for key in self.keys]
        if self.cfg != 1.0:
            conds.append(model_wrap.conds[UNCOND_KEY])
        per_draw = len(conds)
        used = sorted({j for pair in self.pairs for j in pair})
        batch = self.batch_size if self.batch_size > 0 else self._auto_batch(inner, latent_image, per_draw)
        per_call, separate = core.draws_per_call(batch, per_draw, self.n)
        b = latent_image.shape[0]
        sigma = sigmas[0]
        total = torch.zeros((len(self.pairs), b, *latent_image.shape[2:]), dtype=torch.float32, device=latent_image.device)
        pbar = comfy.utils.ProgressBar(self.n)
        console = tqdm(total=self.n, disable=disable_pbar, desc="DiffEdit Mask")
        for start, stop in core.chunks(self.n, per_call):
            comfy.model_management.throw_exception_if_processing_interrupted()
            k = stop - start
            eps = core.draw_noise(self.seed, range(start, stop), latent_image.shape).to(latent_image.device, latent_image.dtype)
            eps = eps.reshape(k * b, *latent_image.shape[1:])
            x = inner.model_sampling.noise_scaling(sigma, eps, latent_image.repeat(k, *([1] * (latent_image.ndim - 1))))
            s = sigma.reshape(1).expand(k * b)
            if separate:
                preds = [comfy.samplers.calc_cond_batch(inner, [c], x, s, options)[0] for c in conds]
            else:
                preds = comfy.samplers.calc_cond_batch(inner, conds, x, s, options)
            guided = list(preds)
            if self.cfg != 1.0:   # each distinct conditioning guided once against the shared uncond
                u = len(conds) - 1
                for j in used:
                    guided[j] = comfy.samplers.cfg_function(inner, preds[j], preds[u], self.cfg, x, s, options, conds[j],
                                                            conds[u])
            for i, (q, r) in enumerate(self.pairs):
                diff = (guided[q] - guided[r]).abs().float().mean(dim=1)
                total[i] += diff.reshape(k, b, *diff.shape[1:]).sum(0)
            pbar.update(k)
            console.update(k)
        console.close()
        self.holder.heat = (total / self.n).cpu()
        return latent_image


def estimate_heats(model, pairs, latent: dict, strength: float, n: int, seed: int, cfg: float = 1.0, negative=None,
                   batch_size: int = 0) -> torch.Tensor:
    """:func:`estimate_heat` of several ``(query, reference)`` pairs in one estimation: ``(k, B, h, w)`` (or
    ``(k, B, T, h, w)``).

    One set of model calls for all pairs: the same ``n`` noise draws for every pair, and every distinct
    conditioning (by identity: a reference several pairs share is evaluated once per draw) goes through
    ``calc_cond_batch`` with the others, ``batch_size`` evaluations per call. A reference of ``None`` is the
    pair's query zeroed out. One pair is exactly :func:`estimate_heat`.
    """
    if n < 1:
        raise InputError("n", "at least 1 noise draw", repr(n))
    latent = fitted_latent(model, latent)
    sigma = noise_level(model, strength)
    distinct, zeroed, index = [], {}, []

    def slot(cond) -> int:
        for j, known in enumerate(distinct):
            if known is cond:
                return j
        distinct.append(cond)
        return len(distinct) - 1

    for query, reference in pairs:
        if reference is None:
            reference = zeroed.setdefault(id(query), zero_out(query))
        index.append((slot(query), slot(reference)))
    keys = [cond_key(j) for j in range(len(distinct))]
    conds = dict(zip(keys, distinct))
    if cfg != 1.0:
        conds[UNCOND_KEY] = negative if negative is not None else zero_out(pairs[0][0])
    holder = Holder()
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds(conds)
    sampler = HeatSampler(n, seed, batch_size, cfg, holder, keys, index)
    sigmas = torch.tensor([sigma, 0.0], dtype=torch.float32)
    guider.sample(torch.zeros_like(latent), latent, sampler, sigmas, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                  seed=seed)
    return holder.heat


def estimate_heat(model, query, reference, latent: dict, strength: float, n: int, seed: int,
                  cfg: float = 1.0, negative=None, batch_size: int = 0) -> torch.Tensor:
    """Mean |x0(query) - x0(reference)| over ``n`` draws and channels at latent resolution.

    ``(B,h,w)`` for an image latent, ``(B,T,h,w)`` for a video latent (every frame over the same draws).
    An empty latent of the wrong channel count or dimensions (e.g. ``EmptySD3LatentImage`` for Qwen-Image)
    is fixed the way KSampler fixes it (``latent``: the LATENT dict).
    """
    return estimate_heats(model, [(query, reference)], latent, strength, n, seed, cfg, negative, batch_size)[0]


class DiffEditSampler(comfy.samplers.Sampler):
    """Inversion of the input latent, then a masked DDIM decode with the guider (a SAMPLER object).

    ``mask``: validated ``(B,H,W)`` maps, white = edit. ``reference``: CONDITIONING for the
    inversion (``None``: the guider's positive zeroed out). ``refine``: fixed-point iterations per
    inversion step (each one extra model call) that make decode(invert(x)) reproduce ``x``.
    """

    def __init__(self, mask: torch.Tensor, reference=None, refine: int = 0, node: str | None = None):
        self.mask, self.reference, self.refine, self.node = mask, reference, int(refine), node
        self.inverted: list[torch.Tensor] | None = None   # levels s_0..s_N of the last run (tests read it)

    def _reference_conds(self, model_wrap, noise, latent_image, seed):
        if self.reference is not None:
            ref = comfy.sampler_helpers.convert_cond(self.reference)
        elif "positive" in model_wrap.original_conds:   # already converted: zero its text embeddings
            ref = [{**c, **{k: torch.zeros_like(c[k]) for k in ("cross_attn", "pooled_output")
                            if isinstance(c.get(k), torch.Tensor)}} for c in model_wrap.original_conds["positive"]]
        else:
            raise InputError("reference", "a CONDITIONING (or a guider with a positive one)", "none", self.node)
        # with the latent's shapes, as the guider processes its own conds (LTX-2 unpacks its streams by them)
        processed = comfy.samplers.process_conds(model_wrap.inner_model, noise, {"reference": ref}, latent_image.device,
                                                 latent_image, None, seed, latent_shapes=[latent_image.shape])
        return processed["reference"]

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        inner = model_wrap.inner_model
        ms = inner.model_sampling
        options = extra_args["model_options"]
        seed = extra_args.get("seed")
        ref = self._reference_conds(model_wrap, noise, latent_image, seed)
        try:
            m = maps_core.maps_for_latent(self.mask, latent_image.shape, "mask")
        except InputError as error:   # raised inside SamplerCustomAdvanced: name the node that made this sampler
            raise error.at(self.node) if self.node else error from None
        m = m.to(latent_image.device, latent_image.dtype)
        n_steps = int(sigmas.numel()) - 1
        s_in = latent_image.new_ones([latent_image.shape[0]])
        levels = [scalings(ms, sigmas[i]) for i in range(n_steps + 1)]
        total = 2 * n_steps   # progress: the inversion steps, then the decode steps
        console = tqdm(total=total, disable=disable_pbar, desc="DiffEdit")

        def reference_x0(x, i):
            return comfy.samplers.calc_cond_batch(inner, [ref], x, sigmas[i] * s_in, options)[0]

        def forward(x, i):   # the DDIM step from level i to level i + 1 under the reference
            d = reference_x0(x, i)
            return core.recombine(d, core.implied_noise(x, d, *levels[i]), *levels[i + 1])

        inverted = [None] * (n_steps + 1)
        x = latent_image
        inverted[n_steps] = x
        for i in range(n_steps, 0, -1):
            comfy.model_management.throw_exception_if_processing_interrupted()
            d = reference_x0(x, i - 1)
            y = core.invert_step(x, d, levels[i], levels[i - 1])
            for _ in range(self.refine):
                y = y + (x - forward(y, i - 1))
            inverted[i - 1] = x = y
            if callback is not None:
                callback(n_steps - i, d, x, total)
            console.update(1)
        self.inverted = inverted

        x = inverted[0]
        for j in range(n_steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            d = model_wrap(x, sigmas[j] * s_in, model_options=options, seed=seed)
            x = core.recombine(d, core.implied_noise(x, d, *levels[j]), *levels[j + 1])
            x = m * x + (1.0 - m) * inverted[j + 1]
            if callback is not None:
                callback(n_steps + j, d, x, total)
            console.update(1)
        console.close()
        return ms.inverse_noise_scaling(sigmas[-1], x)


def edit(model, query, reference, negative, latent: dict, mask: torch.Tensor, steps: int, encode_ratio: float, cfg: float,
         scheduler: str, refine: int) -> dict:
    """The convenience path: KSampler's schedule for ``denoise = encode_ratio``, inversion, masked decode.

    Returns the LATENT dict; outside the mask (map 0 on the latent grid) the input comes back bit-exact.
    """
    if not 0.0 < encode_ratio <= 1.0:
        raise InputError("encode_ratio", "a ratio in (0, 1]", repr(encode_ratio))
    samples = fitted_latent(model, latent)
    sigmas = ksampler_sigmas(model, steps, "euler", scheduler, encode_ratio)
    sampler = DiffEditSampler(mask, reference, refine)
    negative = negative if negative is not None else zero_out(query)
    out = comfy.sample.sample_custom(model, torch.zeros_like(samples), cfg, sampler, sigmas, query, negative, samples,
                                     callback=latent_preview_callback(model, 2 * steps),
                                     disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=0)
    keep = maps_core.maps_for_latent(mask, samples.shape, "mask") <= 0
    out = torch.where(keep.to(out.device), samples.to(out.device, out.dtype), out)
    return output_latent(latent, out)
