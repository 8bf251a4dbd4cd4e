"""Every workflow in workflows/ runs on a real server: converted from the UI format with
``dde_world.ui2api``, its loaders pointed at the tiny test checkpoint, its inputs uploaded from
workflows/inputs (64 x 64 pictures). Steps stay as the workflow has them.

Also what the server hands the frontend for the pack: the extension module and a help page per node."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from dde_world import ui2api
from dde_world.locate import PACK_ROOT
from dde_world.server import PACK_LINK

NAMES = sorted(ui2api.TITLES)
SIZE = 64   # the uploaded inputs
#: nodes that report sampling progress on the websocket
SAMPLING = {"DDE_DifferentialKSampler", "DDE_DifferentialKSamplerAdvanced", "DDE_DiffEditEdit", "DDE_DiffEditMask",
            "DDE_DiffEditMasks", "DDE_StrengthFan"}


def corners(n):
    keep = np.zeros((SIZE, SIZE), bool)
    keep[:n, :n] = keep[:n, -n:] = keep[-n:, :n] = keep[-n:, -n:] = True
    return keep


def input_mask():
    return np.asarray(Image.open(os.path.join(ui2api.INPUT_DIR, "example_mask.png"))) > 127


def outside_the_grown_mask(px=8):
    """Pixels farther than ``px`` (square) from the example mask: Change Map from Edit's map is 0 there
    (the edit recoloured the masked object; grow 2 + softness 4 + the 3 x 3 median reach 7 px)."""
    m = input_mask()
    grown = np.zeros_like(m)
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            grown |= np.roll(np.roll(m, dy, 0), dx, 1)
    return ~grown


def left_quarter():
    keep = np.zeros((SIZE, SIZE), bool)
    keep[:, :SIZE // 4] = True    # the linear gradient with offset 0.25 is 0 up to a quarter of the width
    return keep


def change(path):
    """Per-pixel largest |RGB difference| (0..255) of a saved picture from the uploaded scene."""
    original = np.asarray(Image.open(os.path.join(ui2api.INPUT_DIR, "example_scene.png")).convert("RGB")).astype(int)
    return np.abs(np.asarray(Image.open(path).convert("RGB")).astype(int) - original).max(axis=-1)


#: pixels each workflow's change map leaves at 0, so the composite must give back the input there:
#: the radial gradients end at 0.4 x 64 px from the centre, the mask falloff 24 px outside the disc,
#: and the depth map is 0 on the disc (depth 0.95 >= near_value 0.9, change = far)
KEPT = {
    "soft_inpainting_gradient": lambda: corners(8),
    "sdxl_base_refiner_split": lambda: corners(8),
    "flow_model_sd3": lambda: corners(4),
    "depth_change_map": input_mask,
    "edit_change_map": outside_the_grown_mask,
    "few_step_fractional": left_quarter,
}


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.fixture(scope="module")
def uploaded(server):
    return ui2api.upload_inputs(server.url.split("//", 1)[1])


@pytest.fixture(scope="module")
def runs(server, object_info, uploaded, tiny_models):
    """name -> (prompt, history, websocket messages); each workflow runs once for the module."""
    done = {}

    def run(name):
        if name not in done:
            with open(ui2api.workflow_path(name)) as f:
                prompt = ui2api.convert(json.load(f), object_info)
            loaders = ui2api.set_inputs(prompt, "CheckpointLoaderSimple", ckpt_name=tiny_models["checkpoint"])
            loaders += ui2api.set_inputs(prompt, "UNETLoader", unet_name=tiny_models["unet"])
            loaders += ui2api.set_inputs(prompt, "VAELoader", vae_name=tiny_models["vae"])
            assert loaders, f"{name} has no standard loader to point at a checkpoint"
            history, messages = server.run_ws(prompt, timeout=600)
            done[name] = prompt, history, messages
        return done[name]

    return run


def saved_images(server, prompt, history):
    """(node id, path) of every picture the SaveImage nodes wrote."""
    out = []
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveImage":
            images = history["outputs"].get(node_id, {}).get("images", [])
            assert images, f"SaveImage {node_id} produced nothing"
            out += [(node_id, os.path.join(server.base, "output", i["subfolder"], i["filename"])) for i in images]
    return out


def test_the_workflows_are_the_eleven_use_cases():
    assert sorted(ui2api.workflow_files()) == sorted(ui2api.workflow_path(n) for n in NAMES)
    assert set(NAMES) == {"soft_inpainting_gradient", "diffedit_mask_edit", "diffedit_semantic_differential",
                          "strength_fan", "depth_change_map", "sdxl_base_refiner_split", "flow_model_sd3",
                          "edit_change_map", "few_step_fractional", "several_edits", "region_locked_edit"}


def test_region_locked_edit_gives_the_editor_the_picture_and_locks_it_by_its_own_heat(runs):
    """The instruction and the empty instruction both carry the encoded picture (ReferenceLatent); DiffEdit Mask
    compares exactly those two; its heat is the change map of both the Differential KSampler and the composite."""
    prompt, history, _ = runs("region_locked_edit")
    assert history["status"]["status_str"] == "success"
    by_type = {}
    for k, v in prompt.items():
        by_type.setdefault(v["class_type"], []).append(k)
    (ks,), (mask,), (enc,) = by_type["DDE_DifferentialKSampler"], by_type["DDE_DiffEditMask"], by_type["VAEEncode"]
    ks_in, mask_in = prompt[ks]["inputs"], prompt[mask]["inputs"]
    refs = sorted(by_type["ReferenceLatent"])
    assert sorted([ks_in["positive"][0], ks_in["negative"][0]]) == refs
    assert (mask_in["query"], mask_in["reference"]) == (ks_in["positive"], ks_in["negative"])
    for r in refs:
        assert prompt[r]["inputs"]["latent"] == [enc, 0]
    texts = {prompt[prompt[r]["inputs"]["conditioning"][0]]["inputs"]["text"] for r in refs}
    assert "" in texts and len(texts) == 2
    assert ks_in["latent_image"] == [enc, 0] and ks_in["change_map"] == [mask, 0]     # the heat
    (comp,) = by_type["DDE_CompositeByChangeMap"]
    assert prompt[comp]["inputs"]["change_map"] == [mask, 0]


def test_edit_change_map_workflow_keeps_only_what_the_editor_changed(server, runs):
    """The editor's output differs everywhere (a global colour shift and noise); the saved picture only
    where the editor recoloured the object."""
    prompt, history, _ = runs("edit_change_map")
    edited = np.asarray(Image.open(os.path.join(ui2api.INPUT_DIR, "example_edited.png")).convert("RGB")).astype(int)
    scene = np.asarray(Image.open(os.path.join(ui2api.INPUT_DIR, "example_scene.png")).convert("RGB")).astype(int)
    keep = outside_the_grown_mask()
    assert np.abs(edited - scene).max(axis=-1)[keep].mean() > 2     # the editor changed the kept region too
    for _, path in saved_images(server, prompt, history):
        assert change(path)[keep].max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_and_saves_its_pictures(server, runs, name):
    prompt, history, _ = runs(name)
    assert history["status"]["status_str"] == "success", json.dumps(history["status"])[:3000]
    saved = saved_images(server, prompt, history)
    assert saved
    for _, path in saved:
        picture = np.asarray(Image.open(path))
        assert picture.ndim == 3 and picture.shape[2] == 3
        if name == "strength_fan":   # 6 panels of 64 px, 3 columns and 2 rows, 4 px gaps
            assert picture.shape[:2] == (2 * SIZE + 4, 3 * SIZE + 4 * 2)
        else:
            assert picture.shape[:2] == (SIZE, SIZE)
        assert picture.std() > 0


@pytest.mark.parametrize("name", NAMES)
def test_workflow_reports_progress_and_overlays_on_the_websocket(server, runs, name):
    prompt, _, messages = runs(name)
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    samplers = [k for k, v in prompt.items() if v["class_type"] in SAMPLING]
    assert samplers
    for node_id in samplers:
        mine = [p for p in progress if p.get("node") == node_id]
        assert mine, f"no progress from {prompt[node_id]['class_type']} ({node_id})"
        assert mine[-1]["value"] == mine[-1]["max"] > 0
    executed = {m["data"]["node"]: m["data"]["output"] for m in messages if m["type"] == "executed"}
    overlays = {k: v["dde_overlay"] for k, v in executed.items() if v and "dde_overlay" in v}
    pack_nodes = {k for k, v in prompt.items() if v["class_type"].startswith("DDE_")}
    assert overlays and set(overlays) <= pack_nodes
    for entries in overlays.values():
        for entry in entries:
            for ref in filter(None, (entry["map"], entry["base"])):
                assert ref["type"] == "temp"
                assert os.path.isfile(os.path.join(server.base, "temp", ref["subfolder"], ref["filename"]))


@pytest.mark.parametrize("name", sorted(KEPT))
def test_pixels_the_change_map_keeps_come_back_exactly(server, runs, name):
    prompt, history, _ = runs(name)
    keep = KEPT[name]()
    for _, path in saved_images(server, prompt, history):
        diff = change(path)
        assert diff[keep].max() <= 1, f"{name}: kept pixels changed by up to {diff[keep].max()}"
        assert diff[~keep].max() > 8, f"{name}: nothing changed outside the kept region"


@pytest.mark.parametrize("name", ["diffedit_mask_edit", "diffedit_semantic_differential", "several_edits",
                                  "region_locked_edit"])
def test_diffedit_workflows_change_part_of_the_picture_and_keep_the_rest(server, runs, name):
    # the masks come from a random tiny UNet: where they fall is arbitrary, but the composite must
    # give back the original exactly wherever the map is 0 and change the rest
    prompt, history, _ = runs(name)
    for _, path in saved_images(server, prompt, history):
        diff = change(path)
        assert (diff <= 1).any() and (diff > 8).any()


def test_sdxl_split_runs_base_then_refiner_on_one_schedule(runs):
    prompt, history, messages = runs("sdxl_base_refiner_split")
    samplers = {v["_meta"]["title"]: (k, v["inputs"]) for k, v in prompt.items()
                if v["class_type"] == "DDE_DifferentialKSamplerAdvanced"}
    (base_id, base), (ref_id, ref) = samplers["Differential KSampler (base)"], samplers["Differential KSampler (refiner)"]
    assert base["steps"] == ref["steps"] == 25                 # from the shared PrimitiveNode
    assert base["end_at_step"] == ref["start_at_step"] == 20
    assert (base["add_noise"], base["return_with_leftover_noise"]) == ("enable", "enable")
    assert (ref["add_noise"], ref["return_with_leftover_noise"]) == ("disable", "disable")
    assert base["change_map"] == ref["change_map"]            # one map through the Reroute
    assert ref["latent_image"] == [base_id, 0]
    progress = {p["node"]: p for p in (m["data"] for m in messages if m["type"] == "progress")}
    assert progress[base_id]["max"] == 20 and progress[ref_id]["max"] == 5


# -- the frontend's files -----------------------------------------------------------------------------

def test_help_pages_exist_for_every_pack_node(server, object_info):
    nodes = {k: v["display_name"] for k, v in object_info.items() if v.get("python_module") == f"custom_nodes.{PACK_LINK}"}
    assert len(nodes) >= 20
    for node_id, display in nodes.items():
        text = server.get(f"/extensions/{PACK_LINK}/docs/{node_id}/en.md").decode("utf-8")   # the frontend asks this first
        assert text.startswith(f"# {display}\n"), f"{node_id}.md must start with '# {display}'"
        assert "## Inputs" in text and "## Output" in text, node_id


def test_extension_module_is_served_and_builds_no_html_from_strings(server):
    served = server.get(f"/extensions/{PACK_LINK}/differential_edit.js").decode("utf-8")
    with open(os.path.join(PACK_ROOT, "js", "differential_edit.js"), encoding="utf-8") as f:
        assert served == f.read()
    assert 'from "../../scripts/app.js"' in served and 'from "../../scripts/api.js"' in served
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in served, sink
