"""Instruction editors: tiny random-weight FLUX Kontext and Qwen-Image-Edit, and an analytic editor.

Instruction editors take the picture as *reference latents* on the conditioning (ComfyUI's ``ReferenceLatent``
node, ``TextEncodeQwenImageEdit``: ``reference_latents`` on every conditioning entry, appended) and redraw it
as an instruction says.

* :func:`tiny_editor`: FLUX.1 Kontext is the Flux architecture (``model_detection`` gives Kontext dev the Flux
  dev ``unet_config``; ``model_base.Flux`` reads the reference latents), Qwen-Image-Edit the Qwen-Image one
  (``model_base.QwenImage``): the tiny models of ``families.py`` with reference latents set by ComfyUI's own
  ``ReferenceLatent`` node (where a ComfyUI lacks it, ``conditioning_set_values(..., append=True)`` as it does).
  Flux.2 (dev) edits with reference images the same way (ReferenceLatent, its ``index`` method by default).
* :class:`AnalyticEditor`: an editor whose prediction is an exact posterior mean conditioned on the source scene
  (the reference latent) and an instruction that recolours one object ("the object of colour A turns colour B").
  Its scenes are drawn from a seed (:func:`editor_scene`), so held-out scenes and instructions are unlimited;
  where the instruction changes nothing, its posterior and the empty instruction's are the same function of the
  noisy latent, so DiffEdit's difference there is 0 up to rounding.

Requires ComfyUI on ``sys.path`` for everything but the analytic editor's maths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .analytic import TOKENS, WIDTH, AnalyticWorld, _background, _box, _disk

#: editor -> the family of families.py that is its architecture
EDITORS = {"flux_kontext": "flux", "qwen_image_edit": "qwen_image", "flux2_edit": "flux2"}


def reference_latent(conditioning: list, latent: torch.Tensor) -> list:
    """``conditioning`` with ``latent`` appended to its reference latents, by ComfyUI's ReferenceLatent node."""
    import nodes

    if "ReferenceLatent" in nodes.NODE_CLASS_MAPPINGS:
        from .families import _node

        return _node("ReferenceLatent", conditioning=conditioning, latent={"samples": latent})[0]
    import node_helpers   # what the node does

    return node_helpers.conditioning_set_values(conditioning, {"reference_latents": [latent]}, append=True)


@dataclass
class Editor:
    name: str
    model: object            # ModelPatcher (the family's tiny model)
    positive: list           # the instruction, with the reference latents
    negative: list           # the negative prompt, with the same reference latents
    latent: torch.Tensor     # the picture to edit
    references: list         # the reference latents on both conditionings, in order

    @property
    def reference(self) -> torch.Tensor:
        return self.references[-1]

    @property
    def ratio(self) -> int:
        from . import families as F

        return F.spacial_ratio(EDITORS[self.name])


#: the reference-latent method a multi-reference graph sets (FluxKontextMultiReferenceLatentMethod): Kontext's
#: multi-image "index"; Qwen-Image-Edit 2511's "index_timestep_zero" where this ComfyUI has it
MULTI_METHOD = {"flux_kontext": ("index",), "qwen_image_edit": ("index_timestep_zero", "index"), "flux2_edit": ("index",)}


def tiny_editor(name: str, reference: str = "source") -> Editor:
    """The tiny editor ``name`` (:data:`EDITORS`). ``reference``: ``"source"`` (the picture being edited, as a
    user's graph has it: VAE Encode into ReferenceLatent and into the sampler); ``"other"`` (another picture, of
    another size, as Kontext's preferred sizes and Qwen-Image-Edit's 1-megapixel scaling give: a test can tell the
    reference from the picture, and a step mask of the picture's size cannot fit it); ``"multi"`` (both, chained
    ReferenceLatent nodes, and FluxKontextMultiReferenceLatentMethod's multi-reference method)."""
    from . import families as F

    f = F.build(EDITORS[name])
    shape = (*f.latent.shape[:-2], f.latent.shape[-2] + 4, f.latent.shape[-1])
    other = torch.randn(shape, generator=torch.Generator().manual_seed(29)) * 0.5
    refs = {"source": [f.latent], "other": [other], "multi": [f.latent, other]}[reference]
    positive, negative = f.positive, f.negative
    for ref in refs:
        positive, negative = reference_latent(positive, ref), reference_latent(negative, ref)
    if reference == "multi":
        import nodes

        from .families import _node

        node = nodes.NODE_CLASS_MAPPINGS["FluxKontextMultiReferenceLatentMethod"]
        options = node.GET_SCHEMA().inputs[1].options
        method = next(m for m in MULTI_METHOD[name] if m in options)
        positive, negative = (_node("FluxKontextMultiReferenceLatentMethod", conditioning=c,
                                    reference_latents_method=method)[0] for c in (positive, negative))
    return Editor(name, f.model, positive, negative, f.latent, refs)


# -- the analytic editor -------------------------------------------------------------------------------

#: saturated object colours (RGB in -1..1); backgrounds stay muted (every channel in -0.4..0.6), at least 0.69 away
PALETTE = ((0.9, -0.8, -0.8), (-0.8, 0.9, -0.8), (-0.8, -0.8, 0.9), (0.9, 0.9, -0.8), (-0.8, 0.9, 0.9),
           (0.9, -0.8, 0.9), (0.95, 0.95, 0.95))
#: an instruction picks the reference's pixels within this RGB distance of the colour it names
PICK = 0.3


@dataclass
class EditorScene:
    """A source picture with ``len(objects)`` objects of distinct palette colours, and an instruction for one of
    them: ``source`` ``(1,4,h,w)``, ``objects`` bool ``(h,w)`` each, ``colours`` their palette indices,
    ``instruction`` ``(palette index it names, palette index it asks for)``, ``changed`` the object it changes."""

    source: torch.Tensor
    objects: list
    colours: list
    instruction: tuple
    changed: torch.Tensor


def editor_scene(seed: int, h: int = 32, w: int = 32, n_objects: int = 3) -> EditorScene:
    """A random scene (muted gradient background, ``n_objects`` non-overlapping disks / boxes of distinct saturated
    colours) and a random instruction recolouring one of its objects to a colour none of them has."""
    g = torch.Generator().manual_seed(seed)

    def u(lo, hi, n=1):
        v = (lo + (hi - lo) * torch.rand(n, generator=g)).tolist()
        return v if n > 1 else v[0]

    bg = _background(h, w, tuple(u(-0.4, 0.6, 3)), tuple(u(-0.4, 0.6, 3)), texture_freq=u(1.5, 4.0), shift=u(0, 0.5))
    bg[:3] = bg[:3].clamp(-0.4, 0.6)
    order = torch.randperm(len(PALETTE), generator=g).tolist()
    taken = torch.zeros(h, w, dtype=torch.bool)
    objects, colours = [], []
    while len(objects) < n_objects:
        size = u(0.12, 0.22)
        cy, cx = u(size, 1 - size), u(size, 1 - size)
        shape = (_disk(h, w, cy, cx, size) if u(0, 1) < 0.5
                 else _box(h, w, cy - size, cx - size, cy + size, cx + size))
        grown = torch.nn.functional.max_pool2d(shape[None, None].float(), 5, 1, 2)[0, 0] > 0   # 2 cells apart
        if (grown & taken).any():
            continue
        taken |= shape
        objects.append(shape)
        colours.append(order[len(colours)])
    source = bg.clone()
    for shape, c in zip(objects, colours):
        source = torch.where(shape[None], torch.tensor([*PALETTE[c], u(-0.3, 0.3)]).view(4, 1, 1), source)
    which = int(torch.randint(n_objects, (1,), generator=g))
    target = order[n_objects + int(torch.randint(len(PALETTE) - n_objects, (1,), generator=g))]
    return EditorScene(source.unsqueeze(0), objects, colours, (colours[which], target), objects[which])


class AnalyticEditor:
    """An instruction editor with an exact posterior: ``p(x0 | source, instruction)``.

    The instruction ``(A, B)`` names two palette colours: the pixels of the source within :data:`PICK` of colour A
    turn colour B (their texture channel kept). The edited picture is a mixture, like the analytic world's
    conditions: ``N(edited, tau^2 I)`` (weight 1) and ``N(edited with a darker shade of B, tau^2 I)`` (weight
    ``shade_weight``). The empty instruction ("keep everything") is ``N(source, tau^2 I)``. The posterior mean
    under a noisy latent ``x = a x0 + b eps`` is exact (:meth:`AnalyticWorld._component`).

    Conditioning: the ``(1, 77, 768)`` context's first token carries the instruction — feature 0 is 1 for an
    instruction, features 1..3 colour A, 4..6 colour B; all zeros is the empty instruction. The source comes as
    the last reference latent (``ref_latents``, what ComfyUI's ReferenceLatent node puts on the conditioning).
    """

    def __init__(self, tau: float = 0.05, shade: float = 0.8, shade_weight: float = 0.3):
        self.tau, self.shade, self.shade_weight = tau, shade, shade_weight

    @staticmethod
    def context(instruction: tuple | None) -> torch.Tensor:
        ctx = torch.zeros(1, TOKENS, WIDTH)
        if instruction is not None:
            a, b = instruction
            ctx[0, 0, 0] = 1.0
            ctx[0, 0, 1:4] = torch.tensor(PALETTE[a])
            ctx[0, 0, 4:7] = torch.tensor(PALETTE[b])
        return ctx

    @staticmethod
    def picked(source: torch.Tensor, colour) -> torch.Tensor:
        """Bool ``(h,w)``: the pixels of ``source`` ``(4,h,w)`` an instruction naming ``colour`` acts on."""
        d = source[:3] - torch.as_tensor(colour, dtype=source.dtype).view(3, 1, 1)
        return d.pow(2).sum(0).sqrt() <= PICK

    def components(self, source: torch.Tensor, token: torch.Tensor) -> list:
        """``(mean, tau, weight)`` of the prior given the source ``(4,h,w)`` and the instruction token ``(768,)``."""
        if float(token[0]) < 0.5:
            return [(source, self.tau, 1.0)]
        a, b = token[1:4].to(source.dtype), token[4:7].to(source.dtype)
        where = self.picked(source, a)[None]
        out = []
        for colour, weight in ((b, 1.0), (self.shade * b, self.shade_weight)):
            edited = source.clone()
            edited[:3] = torch.where(where, colour.view(3, 1, 1), source[:3])
            out.append((edited, self.tau, weight))
        return out

    def posterior_mean(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, sources: torch.Tensor,
                       family: str = "flow") -> torch.Tensor:
        out = torch.empty_like(x)
        sig = sigma.reshape(-1).to(torch.float64)
        if sig.numel() == 1:
            sig = sig.expand(x.shape[0])
        for i in range(x.shape[0]):
            s = float(sig[i])
            a, b = (1.0 - s, s) if family == "flow" else (1.0, s)
            comps = self.components(sources[i].to(torch.float64), context[i, 0].to(torch.float64))
            total = sum(c[2] for c in comps)
            logws, means = [], []
            for mu, tau, weight in comps:
                logp, mean = AnalyticWorld._component(x[i].to(torch.float64), mu, tau, a, b, None)
                logws.append(math.log(weight / total) + logp)
                means.append(mean)
            w = torch.softmax(torch.tensor(logws, dtype=torch.float64), dim=0)
            out[i] = (w.view(-1, 1, 1, 1) * torch.stack(means)).sum(0).to(x.dtype)
        return out


def make_editor_model(editor: AnalyticEditor, family: str = "flow"):
    """The analytic editor as a ComfyUI MODEL: a ``BaseModel`` that turns ``reference_latents`` into the
    diffusion model's ``ref_latents`` (as ``model_base.Flux`` / ``QwenImage`` do) around the exact posterior."""
    import comfy.conds
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher

    from .comfy_world import _TYPES, AnalyticConfig

    class EditorNet(torch.nn.Module):
        def __init__(self, world=None, family="flow", device=None, operations=None, **kwargs):
            super().__init__()
            self.family = family
            self.dtype = torch.float32
            self.seen: list = []   # the reference latents of every call
            self.register_buffer("anchor", torch.zeros(1))

        def forward(self, x, timesteps, context=None, ref_latents=None, transformer_options={}, **kwargs):
            if not ref_latents:
                raise RuntimeError("the analytic editor needs the picture as a reference latent (ReferenceLatent)")
            self.seen.append(ref_latents[-1].detach().clone())
            sig = transformer_options["sigmas"].to(torch.float64).reshape(-1)
            if sig.numel() != x.shape[0]:
                sig = sig.repeat(x.shape[0] // sig.numel())
            s = sig.view(-1, 1, 1, 1)
            xin = x.to(torch.float64)
            x_raw = xin if self.family == "flow" else xin * torch.sqrt(s * s + 1.0)
            x0 = editor.posterior_mean(x_raw, sig, context, ref_latents[-1], self.family)
            return ((x_raw - x0) / s).to(x.dtype)

    class EditorModel(comfy.model_base.BaseModel):
        def extra_conds(self, **kwargs):
            out = super().extra_conds(**kwargs)
            refs = kwargs.get("reference_latents", None)
            if refs is not None:
                out["ref_latents"] = comfy.conds.CONDList([self.process_latent_in(r) for r in refs])
            return out

    if family not in ("eps", "flow"):
        raise ValueError("family must be eps or flow")
    config = AnalyticConfig(None, family)
    device = comfy.model_management.get_torch_device()
    base = EditorModel(config, model_type=_TYPES[family], device=device, unet_model=EditorNet)
    return comfy.model_patcher.ModelPatcher(base, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def editor_conditioning(instruction: tuple | None, source: torch.Tensor) -> list:
    """CONDITIONING of an instruction (None: the empty instruction) carrying ``source`` as its reference latent."""
    return reference_latent([[AnalyticEditor.context(instruction), {"pooled_output": torch.zeros(1, WIDTH)}]], source)
