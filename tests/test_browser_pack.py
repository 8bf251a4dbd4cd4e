"""The pack in the real frontend: a ComfyUI server on 127.0.0.1 with the bundled frontend, headless
Debian chromium driven by Playwright (requests anywhere else are aborted in the browser).

Console errors that do not mention the pack are the frontend's own (404s for user.css and the
user's saved workflows on a fresh server, the blocked release-notes request to api.comfy.org);
every test asserts that no error mentions the pack (``Browser.pack_errors``).
"""

import json
import os

import pytest

from dde_world import browser as B
from dde_world import ui2api
from dde_world.server import PACK_LINK

ARTIFACTS = os.environ.get("DDE_ARTIFACTS", os.path.join(os.path.dirname(__file__), "artifacts"))
EXTENSION = "differential_edit.overlay"
NAMES = sorted(ui2api.TITLES)
#: ComfyUI's loaders in the example workflows and the combo that names their model file
MODEL_LOADERS = {"CheckpointLoaderSimple": "ckpt_name", "VAELoader": "vae_name", "UNETLoader": "unet_name",
                 "CLIPLoader": "clip_name", "DualCLIPLoader": "clip_name1"}


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.fixture(scope="module")
def pack_nodes(object_info):
    """(node id, display name) of every pack node, as the server lists them."""
    nodes = [(k, v["display_name"]) for k, v in object_info.items()
             if v.get("python_module") == f"custom_nodes.{PACK_LINK}"]
    assert len(nodes) >= 20
    return sorted(nodes)


@pytest.fixture(scope="module")
def driver():
    with B.playwright_driver() as d:
        yield d


@pytest.fixture(scope="module")
def frontend(server, driver):
    ui2api.upload_inputs(server.url.split("//", 1)[1])   # the workflows' LoadImage files exist
    with B.open_frontend(server.url, driver) as browser:
        yield browser


@pytest.fixture
def page(frontend):
    """The module's page with an empty graph; fails the test if it logged an error about the pack."""
    B.clear_graph(frontend)
    yield frontend
    assert frontend.pack_errors() == []


def test_page_loads_the_extension_with_no_errors_from_the_pack(page, server):
    assert EXTENSION in B.extension_names(page)
    script = server.get(f"/extensions/{PACK_LINK}/differential_edit.js")
    assert b"registerExtension" in script
    assert not any(PACK_LINK in u for u in page.blocked)
    assert page.page_errors == []


def test_the_page_runs_the_frontend_release_under_test(page):
    # .ci/run runs this tier on each ComfyUI's own frontend and on the newest release (DDE_FRONT_END_ROOT)
    assert page.eval("() => window.__COMFYUI_FRONTEND_VERSION__") == B.expected_frontend_version()


def test_every_pack_node_can_be_added_from_the_node_search(page, pack_nodes):
    for node_id, display in pack_nodes:
        try:
            added = B.add_node_by_search(page, display)
        except Exception as e:
            page.screenshot(os.path.join(ARTIFACTS, "node_search_failed.png"))
            raise AssertionError(f"adding '{display}' through the node search failed: {e}") from e
        assert added == [node_id], f"searching '{display}' added {added}"
        assert page.eval("(t) => app.graph._nodes.some(n => n.type === t && n.constructor.nodeData?.name === t)",
                         node_id)
        B.clear_graph(page)
        page.page.mouse.move(300, 300)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_loads_with_every_node_known(page, object_info, name):
    with open(ui2api.workflow_path(name)) as f:
        workflow = json.load(f)
    result = B.load_workflow(page, workflow)
    assert result["unknown"] == []
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    assert sorted(result["loaded"]) == sorted(n["type"] for n in workflow["nodes"])
    assert [t for t in result["broken"] if t not in B.FRONTEND_ONLY] == []
    # newer frontends flag a loader whose model file is missing (as for any shared workflow): only those, and only
    # for their model-file combo; the pack's own nodes are never flagged
    assert all(t in MODEL_LOADERS and widgets == [MODEL_LOADERS[t]] for t, widgets in result["missing_files"]), \
        result["missing_files"]
    # the frontend's own conversion to an API prompt is the one the server tests run
    assert B.frontend_prompt(page)["output"] == ui2api.convert(workflow, object_info)
    # a loaded map node whose reference is connected shows width/height/batch_size greyed out (ignored)
    sized = page.eval("""() => app.graph._nodes.filter(n => n.inputs?.some((i, k) => i.name === 'reference' && n.isInputConnected(k))
        && n.widgets?.some(w => w.name === 'width')).map(n => n.widgets.filter(w => w.disabled).map(w => w.name))""")
    assert sized == ([["width", "height", "batch_size"]]
                     if name in ("soft_inpainting_gradient", "sdxl_base_refiner_split", "few_step_fractional") else [])


def test_ui2api_agrees_with_the_frontend_on_bypass_mute_reroute_primitives_and_linked_widgets(page, object_info):
    spec = {"nodes": [
        {"key": "map", "type": "DDE_RadialGradientMap", "pos": [0, 0], "widgets": {"width": 32, "height": 48}},
        {"key": "inv", "type": "DDE_InvertChangeMap", "pos": [350, 0], "mode": 4},          # bypassed
        {"key": "quant", "type": "DDE_QuantizeChangeMap", "pos": [350, 200], "mode": 2},    # muted
        {"key": "route", "type": "Reroute", "pos": [650, 0]},
        {"key": "comb", "type": "DDE_CombineChangeMaps", "pos": [800, 0], "widgets": {"operation": "lerp"}},
        {"key": "prim", "type": "PrimitiveNode", "pos": [350, 400], "value": 0.25},
        {"key": "int", "type": "PrimitiveInt", "pos": [-300, 0], "widgets": {"value": 40, "value:control": "fixed"}},
        {"key": "note", "type": "Note", "pos": [0, 500], "widgets": {"text": "not in the prompt"}},
        {"key": "img", "type": "MaskToImage", "pos": [1150, 0]},
        {"key": "out", "type": "PreviewImage", "pos": [1400, 0]},
    ], "links": [["map", 0, "inv", "change_map"], ["inv", 0, "route", ""], ["route", 0, "comb", "map_a"],
                 ["map", 0, "quant", "change_map"], ["quant", 0, "comb", "map_b"], ["prim", 0, "comb", "factor"],
                 ["comb", 0, "img", "mask"], ["img", 0, "out", "images"], ["int", 0, "map", "height"]]}
    workflow = B.build_graph(page, spec)
    ours = ui2api.convert(workflow, object_info)
    assert B.frontend_prompt(page)["output"] == ours
    by_type = {v["class_type"]: v["inputs"] for v in ours.values()}
    assert set(by_type) == {"DDE_RadialGradientMap", "DDE_CombineChangeMaps", "MaskToImage", "PreviewImage",
                            "PrimitiveInt"}
    ids = {v["class_type"]: k for k, v in ours.items()}
    assert by_type["PrimitiveInt"] == {"value": 40}                                          # its control value skipped
    assert by_type["DDE_RadialGradientMap"]["height"] == [ids["PrimitiveInt"], 0]           # a widget fed by a link
    assert by_type["DDE_CombineChangeMaps"]["map_a"] == [ids["DDE_RadialGradientMap"], 0]   # through bypass + reroute
    assert "map_b" not in by_type["DDE_CombineChangeMaps"]                                   # from a muted node
    assert by_type["DDE_CombineChangeMaps"]["factor"] == 0.25                                # from the primitive
    assert by_type["DDE_RadialGradientMap"]["width"] == 32


def overlay_state(browser):
    """Per node with an overlay: kind, readiness, its images' natural widths, the canvas size and
    how many canvas pixels carry colour."""
    return browser.eval("""() => Object.fromEntries(app.graph._nodes
        .filter(n => n.widgets?.some(w => w.name === 'dde_overlay'))
        .map(n => {
            const root = n.widgets.find(w => w.name === 'dde_overlay').element;
            const canvas = root.querySelector('canvas');
            let coloured = 0;
            if (canvas && canvas.width) {
                const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] || d[i + 1] || d[i + 2])) coloured++;
            }
            return [n.type, {kind: root.dataset.kind, ready: root.dataset.ready, count: root.dataset.count,
                             connected: root.isConnected, visible: root.getBoundingClientRect().width > 0,
                             images: [...root.querySelectorAll('img')].map(i => [i.className, i.naturalWidth]),
                             canvas: canvas ? [canvas.width, canvas.height] : null, coloured,
                             label: root.querySelector('.dde-overlay-label')?.textContent}];
        }))""")


OVERLAY_GRAPH = {"nodes": [
    {"key": "model", "type": "DDETest_AnalyticModel", "pos": [0, 0], "widgets": {"family": "eps"}},
    {"key": "q", "type": "DDETest_AnalyticCondition", "pos": [0, 110], "widgets": {"scene": 0, "role": "query"}},
    {"key": "r", "type": "DDETest_AnalyticCondition", "pos": [0, 250], "widgets": {"scene": 0, "role": "reference"}},
    {"key": "lat", "type": "DDETest_AnalyticLatent", "pos": [0, 390], "widgets": {"scene": 0, "role": "reference"}},
    {"key": "img", "type": "DDETest_AnalyticDecode", "pos": [0, 560]},
    {"key": "vae", "type": "VAELoader", "pos": [0, 660]},
    {"key": "mask", "type": "DDE_DiffEditMask", "pos": [330, 0],
     "widgets": {"n": 2, "seed": 1, "seed:control": "fixed"}},
    {"key": "pv", "type": "PreviewImage", "pos": [330, 1000], "size": [200, 200]},
    {"key": "radial", "type": "DDE_RadialGradientMap", "pos": [700, 0],
     "widgets": {"width": 64, "height": 64, "batch_size": 2}},
    {"key": "sched", "type": "DDE_SchedulePreview", "pos": [1050, 0], "widgets": {"steps": 6}},
    {"key": "pv2", "type": "PreviewImage", "pos": [1050, 700], "size": [200, 200]},
    {"key": "fan", "type": "DDE_StrengthFan", "pos": [1400, 0],
     "widgets": {"steps": 3, "cfg": 1.0, "strengths": "0, 0.5, 1", "seed:control": "fixed"}},
    {"key": "pv3", "type": "PreviewImage", "pos": [1400, 900], "size": [200, 200]},
], "links": [["model", 0, "mask", "model"], ["q", 0, "mask", "query"], ["r", 0, "mask", "reference"],
             ["lat", 0, "mask", "latent"], ["lat", 0, "img", "samples"], ["img", 0, "mask", "image"],
             ["mask", "preview", "pv", "images"], ["model", 0, "sched", "model"], ["radial", 0, "sched", "change_map"],
             ["sched", "preview", "pv2", "images"], ["model", 0, "fan", "model"], ["q", 0, "fan", "positive"],
             ["r", 0, "fan", "negative"], ["lat", 0, "fan", "latent_image"], ["vae", 0, "fan", "vae"],
             ["fan", "fan", "pv3", "images"]]}


def fit_view(browser):
    browser.eval("""() => {
        const ns = app.graph._nodes;
        const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 30));
        const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
        const c = app.canvas.canvas, s = Math.min((c.clientWidth - 140) / (x1 - x0), (c.clientHeight - 120) / (y1 - y0), 1);
        app.canvas.ds.scale = s; app.canvas.ds.offset = [90 / s - x0, 70 / s - y0];   // clear of the sidebar
        app.canvas.setDirty(true, true);
    }""")
    browser.page.wait_for_timeout(500)


@pytest.fixture(scope="module")
def ran(server, driver, tiny_models):
    """A fresh page (no workflow tabs) on which OVERLAY_GRAPH was queued from the frontend and has run."""
    spec = json.loads(json.dumps(OVERLAY_GRAPH))
    next(n for n in spec["nodes"] if n["key"] == "vae")["widgets"] = {"vae_name": tiny_models["vae"]}
    with B.open_frontend(server.url, driver) as browser:
        B.build_graph(browser, spec)
        B.queue_and_wait(browser)
        browser.page.wait_for_function("""() => { const ns = app.graph._nodes.filter(n => n.type.startsWith('DDE_'));
            return ns.length === 4 && ns.every(n => n.widgets?.find(w => w.name === 'dde_overlay')?.element.dataset.ready === '1'); }""")
        yield browser
        assert browser.pack_errors() == []


def test_overlay_shows_maps_heat_grid_and_schedule_after_a_queued_run(ran):
    page = ran
    fit_view(page)   # as a user looks at the whole graph: newer frontends hide the overlays of nodes off screen
    state = overlay_state(page)
    assert set(state) == {"DDE_DiffEditMask", "DDE_RadialGradientMap", "DDE_SchedulePreview", "DDE_StrengthFan"}
    for node, s in state.items():
        assert s["connected"] and s["visible"], node
        assert s["images"] and all(width > 0 for _, width in s["images"]), (node, s["images"])
    heat = state["DDE_DiffEditMask"]   # the heat map over the decoded picture: two images, a drawn canvas
    assert (heat["kind"], heat["count"]) == ("heat", "1")
    assert heat["label"].startswith("DiffEdit heat: mask ") and "% (heat p50 " in heat["label"]   # the mask's size
    assert sorted(c for c, _ in heat["images"]) == ["dde-overlay-base", "dde-overlay-map"]
    assert heat["canvas"] == [256, 256] and heat["coloured"] > 0.5 * 256 * 256
    radial = state["DDE_RadialGradientMap"]   # a map without a picture: drawn grey, one page per map
    assert (radial["kind"], radial["count"], radial["canvas"]) == ("map", "2", [64, 64])
    assert state["DDE_SchedulePreview"]["kind"] == "schedule" and state["DDE_SchedulePreview"]["canvas"] is None
    assert state["DDE_StrengthFan"]["kind"] == "grid" and state["DDE_StrengthFan"]["images"][0][1] > 256
    path = page.screenshot(os.path.join(ARTIFACTS, "overlay_after_run.png"))
    assert os.path.getsize(path) > 10000
    assert page.pack_errors() == []


def test_overlay_controls_opacity_pages_wheel_and_cleanup(ran):
    # runs after the screenshot test: it removes a node
    page = ran
    result = page.eval("""async () => {
        const root = (t) => app.graph._nodes.find(n => n.type === t).widgets.find(w => w.name === 'dde_overlay').element;
        const pixels = (r) => { const c = r.querySelector('canvas'); return c.getContext('2d').getImageData(0, 0, c.width, c.height).data; };
        const heat = root('DDE_DiffEditMask'), slider = heat.querySelector('input[type=range]');
        slider.value = '0'; slider.dispatchEvent(new Event('input'));
        const at0 = pixels(heat);
        slider.value = '100'; slider.dispatchEvent(new Event('input'));
        const at100 = pixels(heat);
        let tinted = 0;   // pixels the heat layer changes between opacity 0 and 100
        for (let i = 0; i < at0.length; i += 4) if (Math.abs(at0[i] - at100[i]) + Math.abs(at0[i + 1] - at100[i + 1]) > 8) tinted++;
        const radial = root('DDE_RadialGradientMap');
        const before = radial.querySelector('.dde-overlay-counter').textContent;
        radial.querySelector('.dde-overlay-next').click();
        await new Promise(r => setTimeout(r, 500));
        const after = radial.querySelector('.dde-overlay-counter').textContent;
        const scale = app.canvas.ds.scale, box = heat.getBoundingClientRect();
        heat.dispatchEvent(new WheelEvent('wheel', {deltaY: -120, clientX: box.x + box.width / 2,
                                                     clientY: box.y + box.height / 2, bubbles: true, cancelable: true}));
        const zoomed = app.canvas.ds.scale !== scale;
        const node = app.graph._nodes.find(n => n.type === 'DDE_RadialGradientMap');
        app.graph.remove(node);
        await new Promise(r => setTimeout(r, 300));
        return {tinted, heatShare: tinted / (at0.length / 4), before, after, zoomed, removed: !radial.isConnected,
                sliderHiddenForMap: radial.querySelector('.dde-overlay-opacity-box').hidden};
    }""")
    assert result["heatShare"] > 0.05                    # the heat tint follows the opacity slider
    assert (result["before"], result["after"]) == ("1 / 2", "2 / 2")
    assert result["sliderHiddenForMap"] is True           # nothing to blend without a picture
    assert result["zoomed"] is True                       # the wheel over the overlay zooms the canvas
    assert result["removed"] is True                      # the DOM goes with the node
    assert page.pack_errors() == []


def test_node_data_is_never_inserted_as_html(page, server):
    # a label and file names that would run script if they became HTML
    hostile = "<img src=x onerror=\"window.__dde_pwned=1\"><b>bold</b>"
    result = page.eval("""async (label) => {
        const node = LiteGraph.createNode('DDE_InvertChangeMap'); app.graph.add(node);
        node.onExecuted({dde_overlay: [
            {map: {filename: 'missing"><script>window.__dde_pwned=2</script>.png', subfolder: '', type: 'temp'},
             base: null, label, kind: '<b>grid</b>'},
            {map: 'not a file record', label: 'dropped'}, null]});
        await new Promise(r => setTimeout(r, 800));
        const root = node.widgets.find(w => w.name === 'dde_overlay').element;
        return {label: root.querySelector('.dde-overlay-label').textContent, count: root.dataset.count,
                kind: root.dataset.kind, elements: root.querySelectorAll('b, script').length,
                error: root.querySelector('.dde-overlay-error')?.textContent,
                open: root.querySelector('.dde-overlay-open').getAttribute('href'), pwned: window.__dde_pwned ?? null};
    }""", hostile)
    assert result["label"] == hostile and result["elements"] == 0 and result["pwned"] is None
    assert (result["count"], result["kind"]) == ("1", "map")   # malformed entries dropped, unknown kind -> map
    # the file name stays text in the message and is URL-encoded in the /view link
    assert result["error"] == 'could not load missing"><script>window.__dde_pwned=2</script>.png'
    assert result["open"].startswith("/api/view?filename=missing%22%3E%3Cscript%3E")


MESSAGE_GRAPH = {"nodes": [
    {"key": "model", "type": "DDETest_AnalyticModel", "pos": [0, 0], "widgets": {"family": "eps"}},
    {"key": "pos", "type": "DDETest_AnalyticCondition", "pos": [0, 110], "widgets": {"scene": 0, "role": "graded"}},
    {"key": "neg", "type": "DDETest_AnalyticCondition", "pos": [0, 250], "widgets": {"scene": 0, "role": "unconditional"}},
    {"key": "lat", "type": "DDETest_AnalyticLatent", "pos": [0, 390], "widgets": {"scene": 0, "role": "reference"}},
    {"key": "img", "type": "DDETest_AnalyticDecode", "pos": [0, 560]},
    {"key": "tall", "type": "DDETest_MakeTensor", "pos": [0, 660], "widgets": {"shape": "1,64,32", "fill": "ramp"}},
    {"key": "radial", "type": "DDE_RadialGradientMap", "pos": [350, 0]},
    {"key": "ks", "type": "DDE_DifferentialKSampler", "pos": [700, 0],
     "widgets": {"steps": 2, "cfg": 1.0, "seed:control": "fixed"}},
    {"key": "out", "type": "DDETest_LatentReport", "pos": [1050, 0]},
], "links": [["img", 0, "radial", "reference"], ["model", 0, "ks", "model"], ["pos", 0, "ks", "positive"],
             ["neg", 0, "ks", "negative"], ["lat", 0, "ks", "latent_image"], ["lat", 0, "img", "samples"],
             ["tall", "mask", "ks", "change_map"], ["ks", 0, "out", "samples"], ["radial", 0, "out", "mask"]]}


def test_messages_show_on_the_node_size_widgets_follow_the_reference_and_maps_show_over_the_picture(page):
    B.build_graph(page, MESSAGE_GRAPH)
    disabled = "(t) => app.graph._nodes.find(n => n.type === t).widgets.filter(w => w.disabled).map(w => w.name)"
    assert page.eval(disabled, "DDE_RadialGradientMap") == ["width", "height", "batch_size"]   # reference connected
    B.queue_and_wait(page)
    page.page.wait_for_function("""() => app.graph._nodes.find(n => n.type === 'DDE_RadialGradientMap')
        ?.widgets.find(w => w.name === 'dde_overlay')?.element.dataset.ready === '1'""")
    state = page.eval("""() => {
        const ks = app.graph._nodes.find(n => n.type === 'DDE_DifferentialKSampler');
        const box = ks.widgets.find(w => w.name === 'dde_messages')?.element;
        const radial = app.graph._nodes.find(n => n.type === 'DDE_RadialGradientMap');
        const overlay = radial.widgets.find(w => w.name === 'dde_overlay').element;
        return {lines: box ? [...box.children].map(p => p.textContent) : null, visible: !!box?.getBoundingClientRect().height,
                images: [...overlay.querySelectorAll('img')].map(i => i.className).sort(),
                slider: !overlay.querySelector('.dde-overlay-opacity-box').hidden};
    }""")
    assert len(state["lines"]) == 1 and state["visible"], state
    assert state["lines"][0].startswith("\u26a0 change_map: the map is 32 x 64 px but the latent is 32 x 32 cells")
    assert state["images"] == ["dde-overlay-base", "dde-overlay-map"] and state["slider"]   # the map over the picture
    page.screenshot(os.path.join(ARTIFACTS, "messages_and_map_over_picture.png"))
    # disconnecting the reference gives the size widgets back
    page.eval("() => { const n = app.graph._nodes.find(n => n.type === 'DDE_RadialGradientMap'); n.disconnectInput(n.inputs.findIndex(i => i.name === 'reference')); }")
    assert page.eval(disabled, "DDE_RadialGradientMap") == []
    # a run without the cause clears the message
    page.eval("""() => { const t = app.graph._nodes.find(n => n.type === 'DDETest_MakeTensor');
                         t.widgets.find(w => w.name === 'shape').value = '1,64,64'; }""")
    B.queue_and_wait(page)
    page.page.wait_for_function("""() => !app.graph._nodes.find(n => n.type === 'DDE_DifferentialKSampler')
        .widgets.some(w => w.name === 'dde_messages')""")
    assert page.pack_errors() == []
