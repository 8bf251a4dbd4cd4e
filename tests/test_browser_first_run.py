"""A new user's first run, exactly: a fresh ComfyUI server with the pack (its own base folder, nothing
uploaded), each example workflow file dropped onto the canvas, the test checkpoint picked in every
checkpoint combo, the Run button pressed. Every workflow must succeed and save the pictures it is
meant to; the template browser must show a picture and a readable title for every example."""

import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from dde_world import browser as B
from dde_world import ui2api
from dde_world.locate import find_comfyui
from dde_world.server import PACK_LINK, ComfyServer
from test_server_workflows import KEPT, SIZE, change

ARTIFACTS = os.environ.get("DDE_ARTIFACTS", os.path.join(os.path.dirname(__file__), "artifacts"))
NAMES = sorted(ui2api.TITLES)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def fresh(tiny_models):
    """A server of its own: nothing in its input folder but what the pack put there when it loaded."""
    server = ComfyServer(find_comfyui(), models_dir=tiny_models["dir"])
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def page(fresh):
    with B.open_frontend(fresh.url) as browser:
        yield browser


def test_the_pack_puts_the_example_pictures_into_comfyuis_input_folder(fresh):
    inputs = os.path.join(fresh.base, "input")
    expected = sorted(os.listdir(ui2api.INPUT_DIR))
    files = sorted(n for n in os.listdir(inputs) if os.path.isfile(os.path.join(inputs, n)))   # ComfyUI adds a 3d/ folder
    assert files == expected == ["example_depth.png", "example_edited.png", "example_mask.png", "example_scene.png"]
    for name in expected:
        assert digest(os.path.join(inputs, name)) == digest(os.path.join(ui2api.INPUT_DIR, name))
    assert "copied the example workflows' pictures" in fresh.log()


def saved(fresh, history):
    """(SaveImage node id, picture as an array) of every picture the run saved."""
    prompt = history["prompt"][2]
    out = []
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveImage":
            images = history["outputs"].get(node_id, {}).get("images", [])
            assert images, f"SaveImage {node_id} saved nothing"
            for i in images:
                path = os.path.join(fresh.base, "output", i["subfolder"], i["filename"])
                out.append((node_id, path))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_dropped_workflow_runs_on_its_first_run_with_only_the_checkpoint_picked(fresh, page, tiny_models, name):
    path = ui2api.workflow_path(name)
    with open(path, "rb") as f:
        data = f.read()
    B.clear_graph(page)
    page.failed.clear()
    B.drop_file(page, os.path.basename(path), data)
    page.page.wait_for_function("(n) => app.graph._nodes.length === n",
                                arg=len(json.loads(data)["nodes"]), timeout=30000)
    loaders = page.eval("() => app.graph._nodes.filter(n => n.type === 'CheckpointLoaderSimple').map(n => n.id)")
    assert loaders
    for node_id in loaders:
        assert B.pick_combo(page, node_id, "ckpt_name", tiny_models["checkpoint"]) == tiny_models["checkpoint"]
    try:
        prompt_id = B.run_and_wait(page, timeout_ms=600000)
    except Exception:
        page.screenshot(os.path.join(ARTIFACTS, f"first_run_{name}.png"))
        raise
    history = fresh.get(f"/history/{prompt_id}")[prompt_id]
    assert history["status"]["status_str"] == "success"
    pictures = saved(fresh, history)
    assert pictures
    for _, picture_path in pictures:
        picture = np.asarray(Image.open(picture_path).convert("RGB"))
        expected = (2 * SIZE + 4, 3 * SIZE + 8) if name == "strength_fan" else (SIZE, SIZE)
        assert picture.shape[:2] == expected
        if name in KEPT:   # where the change map is 0 the example picture comes back exactly
            diff = change(picture_path)
            assert diff[KEPT[name]()].max() <= 1 and diff[~KEPT[name]()].max() > 8
    # the Load Image previews of the example pictures loaded: no failed request at all for a picture
    assert [u for s, u in page.failed if "/view" in u or PACK_LINK in u] == []
    assert page.pack_errors() == []


def pinia_store(page, store: str, script: str, arg=None):
    """Run ``script`` (a JS function of (store, arg)) on one of the frontend's Pinia stores."""
    return page.eval("""async ([name, body, arg]) => {
        const pinia = document.querySelector('#vue-app').__vue_app__.config.globalProperties.$pinia;
        return await (eval('(' + body + ')'))(pinia._s.get(name), arg, pinia);
    }""", [store, script, arg])


def test_template_browser_shows_a_picture_and_a_readable_title_for_every_example(page):
    page.failed.clear()
    page.page.set_viewport_size({"width": 1920, "height": 2400})   # every card in view: their pictures load lazily
    page.eval("() => performance.clearResourceTimings()")   # the buffer (250 entries) is full after the runs above
    page.eval("() => app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    dialog = page.page.locator("[role=dialog]").last
    dialog.get_by_text(PACK_LINK, exact=True).first.click()   # Templates -> Extensions -> the pack
    cards = page.page.locator("[data-testid^='template-workflow-']")
    page.page.wait_for_function(
        "(n) => { const imgs = [...document.querySelectorAll(\"[data-testid^='template-workflow-'] img\")];"
        " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=len(NAMES), timeout=30000)
    shown = page.eval("""() => [...document.querySelectorAll("[data-testid^='template-workflow-']")].map(c => ({
        id: c.dataset.testid, title: c.querySelector('h3')?.textContent.trim(),
        img: c.querySelector('img')?.naturalWidth}))""")
    page.screenshot(os.path.join(ARTIFACTS, "template_browser.png"))
    assert sorted(s["title"] for s in shown) == sorted(ui2api.TITLES.values())
    assert all(s["img"] == 512 for s in shown), shown   # our 512 px card pictures, not a placeholder
    requested = page.eval("() => performance.getEntriesByType('resource').map(e => decodeURIComponent(e.name))")
    for title in ui2api.TITLES.values():   # the card pictures are fetched from the pack's templates folder
        assert any(u.endswith(f"/api/workflow_templates/{PACK_LINK}/{title}.jpg") for u in requested), title
    assert [u for s, u in page.failed if "workflow_templates" in u] == []
    # a click on a card loads that workflow
    title = ui2api.TITLES["strength_fan"]
    cards.filter(has_text=title).first.click()
    page.page.wait_for_function("() => app.graph._nodes.some(n => n.type === 'DDE_StrengthFan')", timeout=30000)
    with open(ui2api.workflow_path("strength_fan")) as f:
        expected = sorted(n["type"] for n in json.load(f)["nodes"])
    assert sorted(page.eval("() => app.graph._nodes.map(n => n.type)")) == expected
    assert page.pack_errors() == []


PROPERTIES_PANEL = "button[aria-label='Toggle properties panel']"
INFO_TAB = "[data-testid=panel-tab-info]"
HELP_TITLE = ".node-help-content h1"


def _help_in_info_panel(page, node_ids: list[str]) -> dict:
    """Frontends 1.5x: per node, what a user reads after clicking the node and the properties panel's Info tab."""
    shown = {}
    for node_id in node_ids:
        B.clear_graph(page)
        x, y = page.eval("""(type) => {
            const node = LiteGraph.createNode(type); app.graph.add(node); node.pos = [200, 200];
            app.canvas.ds.scale = 1; app.canvas.ds.offset = [0, 0]; app.canvas.setDirty(true, true);
            return app.canvasPosToClientPos([node.pos[0] + 30, node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2]);
        }""", node_id)
        page.page.wait_for_timeout(200)
        page.page.mouse.click(x, y)                       # select the node by its title
        if not page.page.locator(INFO_TAB).is_visible():
            page.page.locator(PROPERTIES_PANEL).click()   # open the panel
        page.page.locator(INFO_TAB).click()
        title = page.page.locator(HELP_TITLE).first
        title.wait_for(state="visible", timeout=15000)
        page.page.wait_for_function("(t) => document.querySelector(t)?.closest('.node-help-content')"
                                    "?.innerText.trim().length > 40", arg=HELP_TITLE, timeout=15000)
        shown[node_id] = page.eval("(t) => document.querySelector(t).closest('.node-help-content').innerHTML",
                                   HELP_TITLE)
    return shown


def _help_in_node_library(page, node_ids: list[str]) -> dict:
    """Frontends 1.3x-1.4x: the node library's help page (its help store, as the library's "?" button opens it)."""
    return pinia_store(page, "nodeHelp", """async (help, ids, pinia) => {
        const defs = pinia._s.get('nodeDef').nodeDefsByName, out = {};
        for (const id of ids) {
            help.openHelp(defs[id]);
            await new Promise(r => setTimeout(r, 50));
            while (help.isLoading) await new Promise(r => setTimeout(r, 50));
            out[id] = help.renderedHelpHtml;
        }
        help.closeHelp();
        return out;
    }""", node_ids)


def test_help_pages_load_from_the_first_url_the_frontend_asks(page, fresh):
    pack = {k: v["display_name"] for k, v in fresh.get("/object_info").items()
            if v.get("python_module") == f"custom_nodes.{PACK_LINK}"}
    page.failed.clear()
    before = len(page.console)
    has_help_store = page.eval("() => !!document.querySelector('#vue-app').__vue_app__.config.globalProperties"
                               ".$pinia._s.get('nodeHelp')")
    if not has_help_store and page.page.locator(PROPERTIES_PANEL).count():
        shown = _help_in_info_panel(page, sorted(pack))
    else:
        shown = _help_in_node_library(page, sorted(pack))
    for node_id, display in pack.items():
        assert f">{display}</h1>" in shown[node_id], (node_id, shown[node_id][:200])
    assert [f"{s} {u}" for s, u in page.failed if "/docs/" in u] == []
    # no console error, but the frontend's own requests to other hosts, which the test browser aborts
    assert [c for c in page.console[before:] if c[0] == "error" and c[2] not in page.blocked] == []
