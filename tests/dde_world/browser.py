"""Playwright helpers: the ComfyUI frontend of a test server in headless Debian chromium.

Chromium is the system one (``/usr/bin/chromium`` or ``DDE_CHROMIUM``), never a download. Every
request that does not go to the test server is aborted before it leaves the browser (the
frontend asks api.comfy.org for release notes), so a test never contacts another address.
Console messages, page errors and failed responses are collected for the assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: the pack as the frontend sees it: its extension URL, its extension names, its node ids
PACK_MARKERS = ("comfyui-differential-edit", "differential_edit", "DDE_", "dde-overlay", "dde_overlay")
#: nodes the frontend defines itself (no server class): they never reach the API prompt
FRONTEND_ONLY = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")


def expected_frontend_version() -> str:
    """The frontend release the test servers serve: the one in ``$DDE_FRONT_END_ROOT`` (a ``static`` folder of a
    ``comfyui-frontend-package`` installed with ``pip --target``, as .ci/run does), else the one in this Python."""
    import glob
    import importlib.metadata

    from .server import FRONT_END_ENV
    root = os.environ.get(FRONT_END_ENV)
    if not root:
        return importlib.metadata.version("comfyui-frontend-package")
    target = os.path.dirname(os.path.dirname(os.path.abspath(root)))
    found = glob.glob(os.path.join(target, "comfyui_frontend_package-*.dist-info"))
    if len(found) != 1:
        raise FileNotFoundError(f"{FRONT_END_ENV}={root}: no single comfyui_frontend_package-*.dist-info beside it")
    return os.path.basename(found[0])[len("comfyui_frontend_package-"):-len(".dist-info")]


def chromium_path() -> str:
    return os.environ.get("DDE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


@dataclass
class Browser:
    """One page of the frontend plus what it reported."""

    page: object
    base_url: str
    console: list = field(default_factory=list)        # (type, text, url of the script or resource)
    page_errors: list = field(default_factory=list)    # uncaught exceptions, as text
    failed: list = field(default_factory=list)         # (status, url) of responses >= 400
    blocked: list = field(default_factory=list)        # urls of aborted outside requests

    def errors(self) -> list[str]:
        """Console errors and page errors, one line each (with the resource or script URL)."""
        lines = [f"console.{t}: {text} [{url}]" for t, text, url in self.console if t == "error"]
        return lines + [f"pageerror: {e}" for e in self.page_errors]

    def pack_errors(self) -> list[str]:
        """Errors that mention the pack: its extension, its node ids or its overlay, or a failed
        request for one of its files."""
        lines = [line for line in self.errors() if any(m in line for m in PACK_MARKERS)]
        return lines + [f"HTTP {s}: {u}" for s, u in self.failed if any(m in u for m in PACK_MARKERS)]

    def eval(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def screenshot(self, path: str) -> str:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.page.screenshot(path=path)
        return path


def _local(base_url: str, url: str) -> bool:
    return url.startswith(base_url + "/") or url == base_url or url.startswith(("data:", "blob:", "about:"))


@contextlib.contextmanager
def playwright_driver():
    """One Playwright driver for several :func:`open_frontend` pages (its sync API cannot be nested)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@contextlib.contextmanager
def open_frontend(base_url: str, driver=None, viewport=(1600, 1000), timeout_ms: int = 90000):
    """Open the frontend at ``base_url`` in chromium with a fresh profile; yields a :class:`Browser`.

    ``driver``: a :func:`playwright_driver` to share; without one the page has its own.
    """
    if driver is None:
        with playwright_driver() as own, open_frontend(base_url, own, viewport, timeout_ms) as browser:
            yield browser
        return
    # a fresh server counts as a new user: the frontend would open the template browser over the canvas
    mark_tutorial_done(base_url)
    profile = tempfile.mkdtemp(prefix="dde_chromium_")
    try:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_ms)
            browser = Browser(page, base_url)

            def route(r):
                if _local(base_url, r.request.url):
                    r.continue_()
                else:
                    browser.blocked.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page.on("console", lambda m: browser.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
            page.on("pageerror", lambda e: browser.page_errors.append(str(e)))
            page.on("response", lambda r: browser.failed.append((r.status, r.url)) if r.status >= 400 else None)
            page.goto(base_url + "/")
            wait_for_app(browser, timeout_ms)
            yield browser
        finally:
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def mark_tutorial_done(base_url: str):
    """Store the frontend setting that skips the first-run template browser (POST /settings)."""
    request = urllib.request.Request(base_url + "/settings", json.dumps({"Comfy.TutorialCompleted": True}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def wait_for_app(browser: Browser, timeout_ms: int = 90000):
    """Wait until the app has its graph, the node definitions and every extension loaded."""
    browser.page.wait_for_function(
        "() => window.app && window.app.graph && window.app.canvas && window.LiteGraph"
        " && Object.keys(LiteGraph.registered_node_types).length > 100"
        " && document.querySelector('canvas#graph-canvas, canvas.graph-canvas, canvas')",
        timeout=timeout_ms)
    browser.page.wait_for_timeout(500)


def extension_names(browser: Browser) -> list[str]:
    return browser.eval("() => (app.extensions || []).map(e => e.name)")


def clear_graph(browser: Browser):
    browser.eval("() => { app.graph.clear(); app.graph.setDirtyCanvas(true, true); }")


def load_workflow(browser: Browser, workflow: dict) -> dict:
    """``app.loadGraphData(workflow)``; returns the node types the frontend does not know, any missing-nodes
    dialog text, the nodes it marks broken (no definition, or an error other than a missing model file) and
    ``missing_files``: ``[type, [widget]]`` of the nodes newer frontends flag because a file their combo names
    is not on this server (a workflow's checkpoint, until the user picks one)."""
    return browser.eval("""async (wf) => {
        const known = (t) => !!LiteGraph.registered_node_types[t];
        const unknown = [...new Set(wf.nodes.map(n => n.type).filter(t => !known(t)))];
        await app.loadGraphData(structuredClone(wf), true, true, 'dde_test');
        await new Promise(r => setTimeout(r, 300));
        const dialogs = [...document.querySelectorAll('.p-dialog')].map(d => d.innerText);
        // a combo whose value is not among its choices: a model file this server does not have
        const missingFiles = (n) => (n.widgets ?? []).filter(w => Array.isArray(w.options?.values)
            && !w.options.values.includes(w.value)).map(w => w.name);
        return {unknown, dialogs, loaded: app.graph._nodes.map(n => n.type),
                broken: app.graph._nodes.filter(n => n.constructor.nodeData === undefined
                                                     || (n.has_errors && !missingFiles(n).length)).map(n => n.type),
                missing_files: app.graph._nodes.filter(n => n.has_errors && missingFiles(n).length)
                                 .map(n => [n.type, missingFiles(n)])};
    }""", workflow)


def frontend_prompt(browser: Browser) -> dict:
    """The frontend's own conversion of the current graph: ``{"output": api prompt, "workflow": ui}``."""
    return browser.eval("async () => { const p = await app.graphToPrompt(); return JSON.parse(JSON.stringify(p)); }")


def build_graph(browser: Browser, spec: dict) -> dict:
    """Build a graph in the real frontend and return ``app.graph.serialize()`` (the saved format).

    ``spec``: ``{"nodes": [{"key", "type", "pos": [x, y], "widgets": {name: value}, "title",
    "mode", "size", "color", "bgcolor", "value"}], "links": [[src_key, output (index or name), dst_key, input
    name]], "groups": [{"title", "bounding": [x, y, w, h]}]}``. Widgets are set by name (the seed
    control widget by ``"<seed name>:control"``); a Note's text is its ``text`` widget; a
    PrimitiveNode's ``value`` is set once its links exist (it takes the widget it feeds).
    """
    return browser.eval("""(spec) => {
        const g = app.graph;
        g.clear();
        const byKey = {};
        for (const n of spec.nodes) {
            const node = LiteGraph.createNode(n.type);
            if (!node) throw new Error('unknown node type ' + n.type);
            if (n.title) node.title = n.title;
            g.add(node);
            node.pos = n.pos;
            for (const [name, value] of Object.entries(n.widgets || {})) {
                let w;
                if (name.endsWith(':control')) {
                    const seed = node.widgets.find(x => x.name === name.slice(0, -8));
                    w = seed?.linkedWidgets?.[0];
                } else {
                    w = node.widgets?.find(x => x.name === name);
                }
                if (!w) throw new Error(n.type + ' has no widget ' + name);
                w.value = value;
                w.callback?.(value, app.canvas, node);
            }
            if (n.mode !== undefined) node.mode = n.mode;
            if (n.color) node.color = n.color;
            if (n.bgcolor) node.bgcolor = n.bgcolor;
            const min = node.computeSize();
            node.size = n.size ? [Math.max(n.size[0], min[0]), Math.max(n.size[1], min[1])] : min;
            byKey[n.key] = node;
        }
        for (const [src, out, dst, input] of spec.links) {
            const a = byKey[src], b = byKey[dst];
            if (!a || !b) throw new Error('bad link ' + JSON.stringify([src, out, dst, input]));
            const o = typeof out === 'number' ? out : a.outputs.findIndex(x => x.name === out);
            const i = b.inputs.findIndex(x => x.name === input);
            if (o < 0 || i < 0) throw new Error('no slot for ' + JSON.stringify([src, out, dst, input]));
            if (!a.connect(o, b, i)) throw new Error('could not connect ' + JSON.stringify([src, out, dst, input]));
        }
        for (const n of spec.nodes) {   // a PrimitiveNode has its widget once it is connected
            if (n.value === undefined) continue;
            const node = byKey[n.key], w = node.widgets?.[0];
            if (!w) throw new Error(n.type + ' has no widget for its value (not connected?)');
            w.value = n.value;
            w.callback?.(n.value, app.canvas, node);
            node.applyToGraph?.();
        }
        for (const gr of spec.groups || []) {
            const group = new LiteGraph.LGraphGroup(gr.title);
            group.pos = [gr.bounding[0], gr.bounding[1]];
            group.size = [gr.bounding[2], gr.bounding[3]];
            g.add(group);
        }
        g.setDirtyCanvas(true, true);
        return JSON.parse(JSON.stringify(g.serialize()));
    }""", spec)


#: the node search box: the classic one (frontends up to 1.4x) or the new search dialog (1.5x), whichever is shown
SEARCH_INPUT = ".comfy-vue-node-search-box input[role=combobox], input[role=combobox][aria-controls=results-list]"
SEARCH_OPTIONS = "li.p-autocomplete-option, #results-list [role=option]"
#: an option's node name as the user reads it (classic: its aria-label; new: the first line of the entry)
_OPTION_LABEL = "(o) => o.getAttribute('aria-label') ?? o.querySelector('.truncate')?.textContent.trim()"
#: the search box's fuzzy matcher finds nothing for longer queries (Fuse's 32-character pattern limit)
SEARCH_MAX_CHARS = 32


def add_node_by_search(browser: Browser, display_name: str, at=(700, 500)) -> list[str]:
    """Add a node the way a user does: double-click the empty canvas, type the display name (its
    first 32 characters, see :data:`SEARCH_MAX_CHARS`) in the node search box, move to the result
    with exactly that name, press Enter.

    Returns the types of the nodes that appeared in ``app.graph``.
    """
    page = browser.page
    before = browser.eval("() => app.graph._nodes.map(n => n.id)")
    box = page.locator(SEARCH_INPUT).last
    for attempt in range(3):   # litegraph pairs clicks by its own clock: a stray earlier click can eat one
        page.mouse.dblclick(*at)
        try:
            box.wait_for(state="visible", timeout=3000)
            break
        except Exception:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(600)
    box.fill(display_name[:SEARCH_MAX_CHARS])
    labels_js = "(sel) => [...document.querySelectorAll(sel)].map(" + _OPTION_LABEL + ")"
    page.wait_for_function(  # the search is debounced: wait until the list answers this query
        "([sel, name]) => [...document.querySelectorAll(sel)].map(" + _OPTION_LABEL + ").includes(name)",
        arg=[SEARCH_OPTIONS, display_name], timeout=10000)
    labels = browser.eval(labels_js, SEARCH_OPTIONS)
    for _ in range(labels.index(display_name)):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    box.wait_for(state="hidden", timeout=10000)
    return browser.eval("(before) => app.graph._nodes.filter(n => !before.includes(n.id)).map(n => n.type)", before)


#: JS: a promise for the next prompt's end (resolves to its id on success, rejects with the error event)
_PROMPT_DONE = """(timeout) => new Promise((resolve, reject) => {
            let id = null;
            const finish = (e) => {
                if (id !== null && e.detail?.prompt_id !== id) return;
                if (e.type === 'execution_success') resolve(id);
                else reject(new Error(e.type + ': ' + JSON.stringify(e.detail).slice(0, 2000)));
            };
            for (const t of ['execution_success', 'execution_error', 'execution_interrupted'])
                api.addEventListener(t, finish);
            api.addEventListener('execution_start', (e) => { id ??= e.detail.prompt_id; });
            setTimeout(() => reject(new Error('no result in time')), timeout);
        })""".replace("api.", "window.comfyAPI.api.api.")
RUN_BUTTON = "[data-testid=queue-button]"


def drop_file(browser: Browser, name: str, data: bytes, mime: str = "application/json", at=(800, 500)):
    """Drop a file onto the canvas as a user does from a file manager: a ``drop`` event carrying the file
    (the frontend's own drop handler loads it)."""
    browser.eval("""([name, bytes, mime, x, y]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: mime}));
        const target = document.elementFromPoint(x, y);
        for (const type of ['dragenter', 'dragover', 'drop'])
            target.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true,
                                                      clientX: x, clientY: y}));
    }""", [name, list(data), mime, *at])


def pick_combo(browser: Browser, node_id: int, widget: str, value: str, attempts: int = 3):
    """Choose ``value`` in a node's combo widget as a user does: click the widget, click the menu entry. A user whose
    click did not open the menu (the canvas still settling after a drop, a toast passing over it) clicks again."""
    page = browser.page
    entry = page.locator(".litecontextmenu .litemenu-entry", has_text=value).first
    for attempt in range(attempts):
        x, y = browser.eval("""([id, name]) => {
            const node = app.graph.getNodeById(id), w = node.widgets.find(w => w.name === name);
            app.canvas.ds.offset = [80 / app.canvas.ds.scale - node.pos[0], 80 / app.canvas.ds.scale - node.pos[1]];
            app.canvas.setDirty(true, true);
            const h = w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
            const [cx, cy] = app.canvasPosToClientPos([node.pos[0] + node.size[0] / 2, node.pos[1] + w.y + h / 2]);
            return [cx, cy];
        }""", [node_id, widget])
        page.wait_for_timeout(300 + 700 * attempt)
        page.mouse.click(x, y)
        try:
            entry.wait_for(state="visible", timeout=10000)
            break
        except Exception:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
    entry.click()
    page.wait_for_timeout(200)
    return browser.eval("([id, name]) => app.graph.getNodeById(id).widgets.find(w => w.name === name).value",
                        [node_id, widget])


def run_and_wait(browser: Browser, timeout_ms: int = 240000) -> str:
    """Press the Run button and wait until the server reports the prompt done; returns its id (raises on failure)."""
    browser.eval("(timeout) => { window.__dde_done = (" + _PROMPT_DONE + ")(timeout); "
                 "window.__dde_done.catch(() => {}); }", timeout_ms)
    browser.page.locator(RUN_BUTTON).first.click()
    return browser.eval("() => window.__dde_done")


def queue_and_wait(browser: Browser, timeout_ms: int = 240000) -> str:
    """Queue the current graph as the Run button does and wait until the server reports it done.

    Returns the prompt id; raises if the run failed (the error is in the message).
    """
    return browser.eval("async (timeout) => { const done = (" + _PROMPT_DONE + ")(timeout); "
                        "await app.queuePrompt(0, 1); return await done; }", timeout_ms)


def dump(obj) -> str:
    return json.dumps(obj, indent=2)[:4000]
