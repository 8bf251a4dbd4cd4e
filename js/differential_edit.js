// Differential Edit: shows a node's change maps, masks, DiffEdit heat maps, Strength Fan grids and
// schedule previews inside the node after it runs.
//
// Contract (nodes/overlays.py): a node's UI output may carry
//   dde_overlay: [{map: {filename, subfolder, type}, base: {...} | null, label: string,
//                  kind: "map" | "mask" | "heat" | "grid" | "schedule"}]
// The files are PNGs served by /view. Kinds map/mask/heat are drawn over their base picture on a
// canvas (tinted by the map value, with an opacity slider); grid/schedule are shown as they are.
// A node's UI output may also carry
//   dde_messages: [string]   (nodes/messages.py: a stretched map, an empty or full mask, collapsed greys)
// shown on the node as warning lines; an empty list clears them.
// Map nodes with width/height/batch_size grey those widgets out while a `reference` is connected.
// Everything is built with createElement/textContent/attributes: node data never becomes HTML.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const KEY = "dde_overlay";
const WIDGET = "dde_overlay";
const MESSAGES = "dde_messages";
const SIZE_WIDGETS = new Set(["width", "height", "batch_size"]);
const CLASS = "dde-overlay";
const OVERLAY_KINDS = new Set(["map", "mask", "heat"]);
const KINDS = new Set([...OVERLAY_KINDS, "grid", "schedule"]);
const TINT = { map: [255, 64, 160], mask: [0, 200, 255] };
const MIN_HEIGHT = 180;
const MIN_WIDTH = 240;

const STYLE = `
.${CLASS} { display: flex; flex-direction: column; gap: 4px; width: 100%; height: 100%; box-sizing: border-box;
  font: 11px sans-serif; color: var(--input-text, #ddd); overflow: hidden; }
.${CLASS}-bar { display: flex; align-items: center; gap: 6px; flex: 0 0 auto; min-height: 20px; white-space: nowrap; }
.${CLASS}-bar button { font: inherit; padding: 0 6px; cursor: pointer; color: inherit;
  background: var(--comfy-input-bg, #222); border: 1px solid var(--border-color, #444); border-radius: 4px; }
.${CLASS}-bar button:disabled { opacity: 0.4; cursor: default; }
.${CLASS}-label { flex: 1 1 auto; overflow: hidden; text-overflow: ellipsis; }
.${CLASS}-bar input[type=range] { width: 70px; }
.${CLASS}-bar a { color: inherit; }
.${CLASS}-view { flex: 1 1 auto; min-height: 0; display: flex; align-items: center; justify-content: center; }
.${CLASS}-view canvas, .${CLASS}-view img { max-width: 100%; max-height: 100%; width: 100%; height: 100%;
  object-fit: contain; image-rendering: auto; }
.${CLASS}-source { display: none; }
.${CLASS}[data-kind=schedule] .${CLASS}-view img { image-rendering: pixelated; }
.${CLASS}-messages { display: flex; flex-direction: column; gap: 3px; box-sizing: border-box; width: 100%;
  font: 11px/1.3 sans-serif; color: #1b1300; }
.${CLASS}-message { background: #f3c24a; border-radius: 4px; padding: 3px 6px; overflow-wrap: anywhere; }
`;

function installStyle() {
  if (document.getElementById(`${CLASS}-style`)) return;
  const style = document.createElement("style");
  style.id = `${CLASS}-style`;
  style.textContent = STYLE;
  document.head.append(style);
}

function el(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** A /view URL for a file reference, or null when the reference is not a plain file record. */
export function viewURL(ref) {
  if (!ref || typeof ref !== "object" || typeof ref.filename !== "string" || !ref.filename) return null;
  const params = new URLSearchParams({
    filename: ref.filename,
    subfolder: typeof ref.subfolder === "string" ? ref.subfolder : "",
    type: typeof ref.type === "string" ? ref.type : "temp",
  });
  return api.apiURL("/view?" + params.toString());
}

/** The valid entries of a dde_overlay payload (anything malformed is dropped). */
export function parseEntries(payload) {
  if (!Array.isArray(payload)) return [];
  const entries = [];
  for (const raw of payload) {
    const map = viewURL(raw?.map);
    if (!map) continue;
    entries.push({
      map,
      name: raw.map.filename,
      base: viewURL(raw.base),
      label: typeof raw.label === "string" ? raw.label : "",
      kind: KINDS.has(raw.kind) ? raw.kind : "map",
    });
  }
  return entries;
}

// Heat colours: transparent black -> red -> yellow (value 0..1).
function heatColour(v) {
  return [255, Math.round(255 * Math.max(0, v * 2 - 1)), Math.round(40 * (1 - v))];
}

/** Draw entry (map over base) on the canvas; `map` and `base` are loaded <img> elements. */
function renderOverlay(canvas, kind, map, base, opacity, mapOnly) {
  const width = base ? base.naturalWidth : map.naturalWidth;
  const height = base ? base.naturalHeight : map.naturalHeight;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (!base || mapOnly) {
    ctx.drawImage(map, 0, 0, width, height);   // the map itself, grey (white = change)
    return;
  }
  ctx.drawImage(base, 0, 0, width, height);
  const layer = document.createElement("canvas");
  layer.width = width;
  layer.height = height;
  const lctx = layer.getContext("2d", { willReadFrequently: true });
  lctx.drawImage(map, 0, 0, width, height);
  const pixels = lctx.getImageData(0, 0, width, height);
  const data = pixels.data;
  for (let i = 0; i < data.length; i += 4) {
    const v = data[i] / 255;
    const [r, g, b] = kind === "heat" ? heatColour(v) : TINT[kind] ?? TINT.map;
    data[i] = r;
    data[i + 1] = g;
    data[i + 2] = b;
    data[i + 3] = Math.round(255 * v * opacity);
  }
  lctx.putImageData(pixels, 0, 0);
  ctx.drawImage(layer, 0, 0);
}

function loadImage(img, url, name) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`could not load ${name}`));
    img.src = url;
  });
}

/** The in-node view: built once per node, refilled on every execution. */
class OverlayView {
  constructor(node) {
    this.node = node;
    this.entries = [];
    this.index = 0;
    this.generation = 0;
    this.root = el("div", CLASS);
    const bar = el("div", `${CLASS}-bar`);
    this.prev = el("button", `${CLASS}-prev`, { type: "button", title: "previous image" });
    this.prev.textContent = "\u25C0";
    this.counter = el("span", `${CLASS}-counter`);
    this.next = el("button", `${CLASS}-next`, { type: "button", title: "next image" });
    this.next.textContent = "\u25B6";
    this.label = el("span", `${CLASS}-label`);
    this.opacityBox = el("label", `${CLASS}-opacity-box`, { title: "overlay opacity" });
    this.opacity = el("input", `${CLASS}-opacity`, { type: "range", min: 0, max: 100, value: 60 });
    this.opacityBox.append(this.opacity);
    this.mapOnlyBox = el("label", `${CLASS}-maponly-box`, { title: "show the map alone (white = change)" });
    this.mapOnly = el("input", `${CLASS}-maponly`, { type: "checkbox" });
    this.mapOnlyBox.append(this.mapOnly, document.createTextNode("map"));
    this.open = el("a", `${CLASS}-open`, { target: "_blank", rel: "noopener noreferrer", title: "open the image" });
    this.open.textContent = "open";
    bar.append(this.prev, this.counter, this.next, this.label, this.opacityBox, this.mapOnlyBox, this.open);
    this.view = el("div", `${CLASS}-view`);
    this.sources = el("div", `${CLASS}-source`);
    this.root.append(bar, this.view, this.sources);

    this.prev.addEventListener("click", () => this.show(this.index - 1));
    this.next.addEventListener("click", () => this.show(this.index + 1));
    this.opacity.addEventListener("input", () => this.redraw());
    this.mapOnly.addEventListener("change", () => this.redraw());
    // keep the canvas's own shortcuts (delete, copy, ...) away from the controls
    this.root.addEventListener("keydown", (e) => e.stopPropagation());
    // the wheel zooms the canvas, as over the rest of the node
    this.root.addEventListener("wheel", (e) => {
      e.preventDefault();
      app.canvas?.processMouseWheel?.(e);
    }, { passive: false });

    this.widget = node.addDOMWidget(WIDGET, "dde-overlay", this.root, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => MIN_HEIGHT,
    });
    this.widget.serialize = false;
    const removeWidget = this.widget.onRemove;
    this.widget.onRemove = function () {
      removeWidget?.apply(this, arguments);
      node[VIEW]?.dispose();
    };
  }

  setEntries(entries) {
    this.entries = entries;
    this.root.dataset.count = String(entries.length);
    this.root.dataset.kind = entries[0]?.kind ?? "";
    this.show(Math.min(this.index, entries.length - 1));
  }

  async show(index) {
    const generation = ++this.generation;
    this.index = Math.max(0, Math.min(index, this.entries.length - 1));
    const entry = this.entries[this.index];
    this.root.dataset.ready = "0";
    this.prev.disabled = this.index <= 0;
    this.next.disabled = this.index >= this.entries.length - 1;
    this.counter.textContent = `${this.index + 1} / ${this.entries.length}`;
    this.counter.hidden = this.prev.hidden = this.next.hidden = this.entries.length < 2;
    this.label.textContent = entry.label;
    this.label.title = entry.label;
    this.open.href = entry.map;
    const overlay = OVERLAY_KINDS.has(entry.kind);
    this.opacityBox.hidden = !(overlay && entry.base);
    this.mapOnlyBox.hidden = !(overlay && entry.base);

    const map = el("img", `${CLASS}-map`, { alt: "" });
    const base = entry.base ? el("img", `${CLASS}-base`, { alt: "" }) : null;
    try {
      await Promise.all([loadImage(map, entry.map, entry.name), base ? loadImage(base, entry.base, "the picture") : null]);
    } catch (error) {
      if (generation !== this.generation) return;
      this.view.replaceChildren();
      const message = el("span", `${CLASS}-error`);
      message.textContent = error.message;
      this.view.append(message);
      return;
    }
    if (generation !== this.generation) return;   // a newer execution or page won
    if (overlay) {
      this.sources.replaceChildren(...[map, base].filter(Boolean));
      this.canvas = el("canvas", `${CLASS}-canvas`);
      this.view.replaceChildren(this.canvas);
      this.redraw();
    } else {
      this.canvas = null;
      this.sources.replaceChildren();
      this.view.replaceChildren(map);
    }
    this.root.dataset.ready = "1";
    this.node.setDirtyCanvas?.(true, true);
  }

  redraw() {
    const entry = this.entries[this.index];
    const map = this.sources.querySelector(`img.${CLASS}-map`);
    if (!this.canvas || !entry || !map) return;
    const base = this.sources.querySelector(`img.${CLASS}-base`);
    renderOverlay(this.canvas, entry.kind, map, base, Number(this.opacity.value) / 100, this.mapOnly.checked);
  }

  dispose() {
    this.generation++;
    for (const img of this.root.querySelectorAll("img")) {
      img.onload = img.onerror = null;
      img.removeAttribute("src");
    }
    this.root.remove();
    if (this.node[VIEW] === this) delete this.node[VIEW];
  }
}

const VIEW = Symbol("dde-overlay-view");

function showOverlay(node, payload) {
  const entries = parseEntries(payload);
  if (!entries.length) return;
  installStyle();
  const view = (node[VIEW] ??= new OverlayView(node));
  view.setEntries(entries);
  const [minWidth, minHeight] = node.computeSize?.() ?? [MIN_WIDTH, MIN_HEIGHT];
  node.setSize?.([Math.max(node.size[0], minWidth, MIN_WIDTH), Math.max(node.size[1], minHeight)]);
  node.setDirtyCanvas?.(true, true);
}

/** The node's warning lines (a DOM widget made on the first message, removed when they are cleared). */
export function showMessages(node, payload) {
  const lines = Array.isArray(payload) ? payload.filter((l) => typeof l === "string" && l) : [];
  let widget = node.widgets?.find((w) => w.name === MESSAGES);
  if (!lines.length) {
    if (widget) {
      node.removeWidget?.(widget);
      node.setSize?.([node.size[0], node.computeSize?.()[1] ?? node.size[1]]);
      node.setDirtyCanvas?.(true, true);
    }
    return;
  }
  installStyle();
  if (!widget) {
    const box = el("div", `${CLASS}-messages`);
    box.addEventListener("wheel", (e) => { e.preventDefault(); app.canvas?.processMouseWheel?.(e); }, { passive: false });
    const height = () => {   // wrapped lines of about 6 px per character at the node's width
      const perLine = Math.max(20, ((node.size?.[0] ?? 300) - 40) / 6);
      return 8 + [...box.children].reduce((h, p) => h + 8 + 15 * Math.ceil(p.textContent.length / perLine), 0);
    };
    widget = node.addDOMWidget(MESSAGES, "dde-messages", box, {
      serialize: false, hideOnZoom: false, getMinHeight: height, getMaxHeight: height,
    });
    widget.serialize = false;
  }
  widget.element.replaceChildren(...lines.map((line) => {
    const p = el("div", `${CLASS}-message`);
    p.textContent = "\u26A0 " + line;
    return p;
  }));
  widget.element.dataset.count = String(lines.length);
  const [, minHeight] = node.computeSize?.() ?? [0, node.size[1]];
  node.setSize?.([node.size[0], Math.max(node.size[1], minHeight)]);
  node.setDirtyCanvas?.(true, true);
}

/** Grey out width/height/batch_size while the optional `reference` input is connected (they are ignored then). */
function syncSizeWidgets(node) {
  const connected = node.inputs?.find((i) => i.name === "reference")?.link != null;
  for (const w of node.widgets ?? []) if (SIZE_WIDGETS.has(w.name)) w.disabled = connected;
  node.setDirtyCanvas?.(true, false);
}

app.registerExtension({
  name: "differential_edit.overlay",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const result = onExecuted?.apply(this, arguments);
      if (message && KEY in message) showOverlay(this, message[KEY]);
      if (message && MESSAGES in message) showMessages(this, message[MESSAGES]);
      return result;
    };
    const inputs = nodeData?.input ?? {};
    if (inputs.optional?.reference && ["width", "height", "batch_size"].every((k) => k in (inputs.required ?? {}))) {
      for (const hook of ["onConnectionsChange", "onConfigure", "onNodeCreated"]) {
        const original = nodeType.prototype[hook];
        nodeType.prototype[hook] = function () {
          const result = original?.apply(this, arguments);
          syncSizeWidgets(this);
          return result;
        };
      }
    }
    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      const result = onRemoved?.apply(this, arguments);
      this[VIEW]?.dispose();
      return result;
    };
  },
});
