"""Several edits at once (what LEDITS++ does): k DiffEdit masks from one estimation, one regional conditioning.

* :class:`Concept` — one edit: a query, its reference (None: the query zeroed out) and a strength; concepts travel
  between nodes as a tuple, in chain order (*Edit Concept* nodes append to it, never modify it).
* :func:`estimate` — the k heats from one batched estimation (``diffedit_sampling.estimate_heats``: the same
  noise draws for every concept), each concept's heat and mask as *DiffEdit Mask* makes them, the overlap rule
  and the change map (``core.regions``).
* :func:`regional_conditioning` — ComfyUI's own regional conditioning (the semantics of ``ConditioningSetMask``):
  every concept's query with ``mask`` = its weights on the latent grid, the base conditioning with ``1 -`` the
  union's, so ComfyUI's ``calc_cond_batch`` uses each concept's prediction inside its own region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import node_helpers   # ComfyUI's: conditioning_set_values, what ConditioningSetMask uses

from . import diffedit_sampling
from .core import diffedit_math
from .core import regions as regions_core
from .core.errors import InputError, describe
from .core.validate import check_conditioning, check_number

#: the io type of a chain of edit concepts between nodes
IO_TYPE = "DDE_EDIT_CONCEPTS"


@dataclass(frozen=True, eq=False)
class Concept:
    query: list
    reference: list | None = None
    strength: float = 1.0


def chain(previous, query, reference=None, strength: float = 1.0) -> tuple[Concept, ...]:
    """``previous`` (a chain or None) with one more concept at its end (a new tuple; ``previous`` is untouched)."""
    before = () if previous is None else check_concepts(previous, "previous")
    concept = Concept(check_conditioning(query, "query"), check_conditioning(reference, "reference", optional=True),
                      check_number(strength, "strength", 0.0, 1.0))
    return (*before, concept)


def check_concepts(concepts, input_name: str = "concepts") -> tuple[Concept, ...]:
    if not isinstance(concepts, tuple) or not concepts or not all(isinstance(c, Concept) for c in concepts):
        raise InputError(input_name, "edit concepts (from Edit Concept)", describe(concepts))
    return concepts


@dataclass(frozen=True)
class Estimate:
    heats: torch.Tensor     # (k,B,H,W) each concept's heat as DiffEdit Mask gives it
    masks: torch.Tensor     # (k,B,H,W) each concept's binary mask as DiffEdit Mask gives it
    regions: torch.Tensor   # (k,B,H,W) disjoint: where each concept edits (overlaps to the larger heat)
    change_map: torch.Tensor  # (B,H,W) strength x region, summed
    raw: torch.Tensor       # (k,B,h,w) the raw differences on the latent grid


def estimate(model, concepts: tuple[Concept, ...], latent: dict, size: tuple[int, int], strength: float, n: int,
             seed: int, cfg: float, method: str, threshold: float, ratio: float, percentile: float, smooth: float,
             grow: int, batch_size: int, negative=None) -> Estimate:
    """The k heats and masks from one estimation, then the regions and the change map at picture ``size``."""
    latent_size(model, latent)   # refuses a video latent before any model call
    pairs = [(c.query, c.reference) for c in concepts]
    raw = diffedit_sampling.estimate_heats(model, pairs, latent, strength, n, seed, cfg, negative, batch_size)
    made = [diffedit_math.heat_and_mask(d, size, method, threshold, ratio, percentile, smooth, grow) for d in raw]
    heats = torch.stack([h for h, _ in made])
    masks = torch.stack([m for _, m in made])
    owned = regions_core.regions(heats, masks)
    return Estimate(heats, masks, owned, regions_core.change_map(owned, [c.strength for c in concepts]), raw)


def base_conditioning(concepts: tuple[Concept, ...], base=None):
    """The conditioning outside every region: ``base``, else the first concept's reference, else its query zeroed out."""
    if base is not None:
        return base
    first = concepts[0]
    return first.reference if first.reference is not None else diffedit_sampling.zero_out(first.query)


def regional_conditioning(concepts: tuple[Concept, ...], regions: torch.Tensor, latent_size: tuple[int, int], base):
    """One CONDITIONING: each concept's query masked by its region's weights on the latent grid, ``base`` by the
    weights of the cells no region touches (``ConditioningSetMask`` with strength 1, default area; a mask already on
    a query is replaced). A conditioning of several entries (Conditioning Combine) shares its weight among them, so
    the masks of every cell add up to 1. Conditionings whose weight is 0 everywhere are left out (they would change
    nothing and cost a model evaluation per step)."""
    weights, rest = regions_core.regional_weights(regions, latent_size)
    out = []
    for cond, weight in [*((c.query, w) for c, w in zip(concepts, weights)), (base, rest)]:
        if bool((weight > 0).any()):
            share = weight if len(cond) == 1 else weight / len(cond)
            out += node_helpers.conditioning_set_values(cond, {"mask": share, "set_area_to_bounds": False,
                                                               "mask_strength": 1.0})
    return out


def latent_size(model, latent: dict) -> tuple[int, int]:
    """The latent grid ``(h, w)`` the sampler sees (an empty latent fitted as KSampler fits it); a video latent is
    refused (regional conditioning here is per picture)."""
    samples = diffedit_sampling.fitted_latent(model, latent)
    if samples.ndim != 4:
        raise InputError("latent", "an image latent (several edits at once work on pictures; on video use DiffEdit "
                         "Mask once per edit)", f"a video latent of shape {tuple(samples.shape)}")
    return int(samples.shape[-2]), int(samples.shape[-1])


def concept_batch(x: torch.Tensor) -> torch.Tensor:
    """``(k,B,...)`` → ``(k*B,...)``: concept-major, as the node outputs them."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]).contiguous()
