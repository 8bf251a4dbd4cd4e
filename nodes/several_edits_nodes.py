"""Several edits at once: Edit Concept (one edit, chained) and DiffEdit Masks (several edits)."""

from __future__ import annotations

from comfy_api.latest import io

from . import messages, overlays, several_edits
from .core import diffedit_math as core
from .core import maps as maps_core
from .core import pixels, visual
from .core.errors import InputError
from .core.validate import check_conditioning
from .inputs import estimation_inputs
from .latent_space import model_latent, pixels_per_cell
from .naming import DIFFEDIT, display_name, names_errors, search_aliases

EditConcepts = io.Custom(several_edits.IO_TYPE)


class EditConcept(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_EditConcept",
            display_name="Edit Concept",
            category=DIFFEDIT,
            **search_aliases("edit concept", "several edits", "multiple edits", "ledits", "multi edit"),
            description="One edit of several: what a region should become (query), what it shows now (reference) and "
                        "how strongly it changes. Chain Edit Concepts into DiffEdit Masks (several edits).",
            inputs=[
                io.Conditioning.Input("query", tooltip="This edit's prompt: what its region should show."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="The change map's value inside this edit's region: 1 = changed fully, 0.5 = like "
                               "img2img at half strength (Differential KSampler), 0 = kept exactly."),
                io.Conditioning.Input("reference", optional=True,
                                      tooltip="What the picture shows now (for finding this edit's region). Not "
                                      "connected: the query zeroed out (unconditional). One reference linked to "
                                      "several concepts is evaluated once per draw."),
                EditConcepts.Input("previous", optional=True,
                                   tooltip="Earlier concepts (another Edit Concept's output); this one comes after them."),
            ],
            outputs=[EditConcepts.Output(display_name="concepts",
                                         tooltip="The chain of concepts so far, in order: connect to DiffEdit Masks or "
                                         "to the next Edit Concept's previous.")],
        )

    @classmethod
    @names_errors
    def execute(cls, query, strength, reference=None, previous=None) -> io.NodeOutput:
        return io.NodeOutput(several_edits.chain(previous, query, reference, strength))


class DiffEditMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DDE_DiffEditMasks",
            display_name="DiffEdit Masks (several edits)",
            category=DIFFEDIT,
            **search_aliases("several edits", "multiple edits", "multi mask", "ledits", "regional diffedit", "auto mask"),
            description="Several DiffEdit masks from one estimation (the same noise draws and batched model calls for "
                        "every concept), then one edit: each concept's query conditions its own region (regional "
                        "conditioning, as ConditioningSetMask) and the change map is their union. Connect positive and "
                        "change_map to a Differential KSampler.",
            inputs=[
                io.Model.Input("model", tooltip="Any diffusion model (eps, v or flow); its patches and wrappers apply."),
                EditConcepts.Input("concepts", tooltip="The edits, from a chain of Edit Concept nodes (in chain order)."),
                io.Latent.Input("latent", tooltip="The latent of the picture to edit (VAE Encode); pictures only, not video."),
                *estimation_inputs("a draw needs one per distinct conditioning: every query, every distinct reference, "
                                   "and the negative with cfg"),
                io.Conditioning.Input("base", optional=True,
                                      tooltip="The conditioning outside every concept's region (what the picture shows). "
                                      "Not connected: the first concept's reference (its query zeroed out without one)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Unconditional branch of the estimation when cfg != 1. Not connected: the "
                                      "first query zeroed out."),
                io.Image.Input("image", optional=True,
                               tooltip="The picture itself: sets the size of the masks and the change map and is shown "
                               "under the preview. Not connected: the model's picture pixels per latent cell, grey preview."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive",
                                       tooltip="Every concept's query inside its own region and the base outside them "
                                       "(weights add up to 1 in every latent cell): the Differential KSampler's positive."),
                io.Mask.Output(display_name="change_map",
                               tooltip="Each concept's strength inside its region, 0 outside every region (kept "
                               "bit-exact): the Differential KSampler's change_map."),
                io.Mask.Output(display_name="masks",
                               tooltip="Where each concept edits (white), one per concept in chain order (concepts x "
                               "batch): its DiffEdit mask, pixels two masks share given to the larger heat."),
                io.Mask.Output(display_name="heats",
                               tooltip="Each concept's DiffEdit heat (0..1), one per concept in chain order."),
                io.Image.Output(display_name="preview",
                                tooltip="The picture with each concept's region in its own colour (1st red, 2nd blue, "
                                "3rd green, 4th orange, ...), outlined white."),
            ],
        )

    @classmethod
    @names_errors
    def execute(cls, model, concepts, latent, strength, n, seed, cfg, threshold_method, threshold, clamp_ratio,
                percentile, smooth, grow, batch_size, base=None, negative=None, image=None) -> io.NodeOutput:
        samples = model_latent(model, latent, "latent")
        concepts = several_edits.check_concepts(concepts)
        base = check_conditioning(base, "base", optional=True)
        negative = check_conditioning(negative, "negative", optional=True)
        if threshold_method not in core.METHODS:
            raise InputError("threshold_method", f"one of {core.METHODS}", repr(threshold_method))
        grid = several_edits.latent_size(model, latent)
        picture = None
        if image is not None:
            picture = pixels.as_images(image, "image")
            size = tuple(picture.shape[1:3])
        else:
            scale = pixels_per_cell(model)
            size = (samples.shape[-2] * scale, samples.shape[-1] * scale)
        found = several_edits.estimate(model, concepts, latent, size, strength, n, seed, cfg, threshold_method,
                                       threshold, clamp_ratio, percentile, smooth, grow, batch_size, negative)
        positive = several_edits.regional_conditioning(concepts, found.regions, grid,
                                                       several_edits.base_conditioning(concepts, base))
        if picture is not None:
            picture = maps_core.match_batch(picture, found.change_map.shape[0], "image")
        shown = visual.concepts_preview(found.regions, found.heats, picture)
        node = display_name(cls)
        warnings = []
        for i, c in enumerate(concepts):
            identical = messages.same_conditioning(c.query, c.reference) or bool(found.raw[i].max() <= 0)
            warnings += messages.coverage(node, f"concept {i + 1}", found.masks[i], identical=identical)
        areas = ", ".join(f"{100 * float(r.mean()):.1f}%" for r in found.regions)
        ui = overlays.messages_ui(warnings, overlays.overlay_ui(found.change_map, picture, kind="map",
                                                               label=f"{len(concepts)} concepts, regions {areas}"))
        return io.NodeOutput(positive, found.change_map, several_edits.concept_batch(found.regions),
                             several_edits.concept_batch(found.heats), shown, ui=ui)


NODES = [EditConcept, DiffEditMasks]
