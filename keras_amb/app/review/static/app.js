// keras-amb review: the gallery, the map editor and the fine-tuning panel.
// Plain JavaScript; every image is addressed by its key, never by a path.
"use strict";

// A token, if the server has one, travels in an HttpOnly cookie the server
// set when the page was first opened with ?token=; no URL carries it.
const state = {
  info: null, page: 0, perPage: 24, matching: 0,
  editor: null, logOffset: 0, polling: null,
};

// === Requests ===

function keyPath(key) { return key.split("/").map(encodeURIComponent).join("/"); }

function url(path, query) {
  const q = new URLSearchParams(query || {});
  const s = q.toString();
  return path + (s ? "?" + s : "");
}

async function api(path, options, query) {
  const response = await fetch(url(path, query), options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function show(text, isError) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = "message" + (isError ? " error" : "");
  box.hidden = !text;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("could not load " + src));
    img.src = src;
  });
}

function imageUrl(key, what, query) { return url("api/image/" + keyPath(key) + "/" + what, query); }

async function greyPixels(src, width, height) {
  const img = await loadImage(src);
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const grey = new Uint8ClampedArray(width * height);
  for (let i = 0; i < grey.length; i++) grey[i] = rgba[4 * i];
  return grey;
}

// === Colours: the inferno colour map, as the figures draw it ===

const INFERNO = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];

function inferno(v) {
  const x = Math.min(1, Math.max(0, v / 255)) * (INFERNO.length - 1);
  const i = Math.min(INFERNO.length - 2, Math.floor(x));
  const t = x - i, a = INFERNO[i], b = INFERNO[i + 1];
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

function drawOverlay(canvas, img, grey, width, height, alpha) {
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height);
  for (let i = 0; i < grey.length; i++) {
    const c = inferno(grey[i]);
    for (let k = 0; k < 3; k++) data.data[4 * i + k] = (1 - alpha) * data.data[4 * i + k] + alpha * c[k];
  }
  ctx.putImageData(data, 0, 0);
}

// === Header and gallery ===

function updateCounter(summary) {
  const s = summary;
  document.getElementById("counter").textContent = state.info && state.info.labelled
    ? `${s.misclassified_corrected} of ${s.misclassified} misclassified images corrected`
    : `${s.corrected} images corrected`;
  document.getElementById("scoring").textContent =
    s.scored < s.total ? `scored ${s.scored} of ${s.total} images…` : `${s.total} images`;
}

async function loadInfo() {
  state.info = await api("api/info");
  document.getElementById("run").textContent = `${state.info.run} — ${state.info.images}`;
  const select = document.getElementById("class");
  for (const name of state.info.classes) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    select.appendChild(option);
  }
  updateCounter(state.info.summary);
  if (state.info.read_only) {
    // Another user's run, a read-only disk: say so before any edit is made.
    for (const id of ["save", "start"]) document.getElementById(id).disabled = true;
    show("Saving is off: " + state.info.read_only + ". Give --output a folder you can write.",
         true);
  }
}

async function loadPage() {
  const query = { page: state.page, per_page: state.perPage,
    filter: document.getElementById("filter").value, class: document.getElementById("class").value };
  document.getElementById("grid").dataset.ready = "0";
  const body = await api("api/gallery", {}, query);
  state.stale = body.summary.scored < body.summary.total;
  state.matching = body.matching;
  updateCounter(body.summary);
  const pages = Math.max(1, Math.ceil(body.matching / state.perPage));
  document.getElementById("page-label").textContent = `page ${state.page + 1} of ${pages} (${body.matching} images)`;
  document.getElementById("prev").disabled = state.page === 0;
  document.getElementById("next").disabled = state.page + 1 >= pages;
  const grid = document.getElementById("grid");
  grid.replaceChildren();
  for (const item of body.items) {
    const card = document.createElement("div");
    card.className = "card" + (item.misclassified ? " misclassified" : "");
    card.dataset.key = item.key;
    card.dataset.misclassified = item.misclassified ? "1" : "0";
    const img = document.createElement("img");
    img.src = imageUrl(item.key, "thumbnail.png", { v: item.version });
    img.alt = item.key;
    card.appendChild(img);
    const text = document.createElement("div");
    const predicted = item.predicted_class === null ? "?" :
      `${item.predicted_class} ${(100 * item.probability).toFixed(1)}%`;
    text.innerHTML = "";
    const badge = item.edited ? '<span class="badge">corrected</span>' : "";
    text.insertAdjacentHTML("beforeend", badge);
    const line1 = document.createElement("div");
    line1.textContent = `predicted: ${predicted}`;
    if (item.misclassified) line1.className = "wrong";
    const line2 = document.createElement("div");
    line2.textContent = item.true_class === null ? "true: unknown" : `true: ${item.true_class}`;
    const line3 = document.createElement("div");
    line3.className = "muted";
    line3.textContent = item.error ? item.error : item.key;
    text.append(line1, line2, line3);
    card.appendChild(text);
    card.addEventListener("click", () => openEditor(item.key));
    grid.appendChild(card);
  }
  grid.dataset.ready = "1";
  watchScoring(body.summary);
}

function watchScoring(summary) {
  // While images are still being scored the order is provisional: the
  // header counts them, and "Refresh" places the page again (cards never
  // move under the pointer on their own).
  const refresh = document.getElementById("refresh");
  refresh.classList.toggle("primary", summary.scored < summary.total || state.stale === true);
  if (summary.scored < summary.total) {
    state.stale = true;
    clearTimeout(state.rescore);
    state.rescore = setTimeout(async () => {
      const info = await api("api/info");
      updateCounter(info.summary);
      watchScoring(info.summary);
    }, 2000);
  }
}

// === Editor ===

function setTool(tool) {
  state.editor.tool = tool;
  document.getElementById("tool-brush").classList.toggle("active", tool === "brush");
  document.getElementById("tool-eraser").classList.toggle("active", tool === "eraser");
}

function renderMap(box) {
  // Colours the map into the canvas; `box` ([x0, y0, x1, y1]) limits the
  // work to what a stroke changed, so large images stay responsive.
  const e = state.editor;
  const ctx = document.getElementById("map-canvas").getContext("2d");
  if (!e.rgba) e.rgba = ctx.createImageData(e.width, e.height);
  const [x0, y0, x1, y1] = box || [0, 0, e.width, e.height];
  const data = e.rgba.data;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = y * e.width + x;
      const c = inferno(e.map[i]);
      data[4 * i] = c[0]; data[4 * i + 1] = c[1]; data[4 * i + 2] = c[2]; data[4 * i + 3] = 255;
    }
  }
  ctx.putImageData(e.rgba, 0, 0, x0, y0, x1 - x0, y1 - y0);
  document.getElementById("undo").disabled = e.undo.length === 0;
  document.getElementById("redo").disabled = e.redo.length === 0;
}

function pushUndo() {
  const e = state.editor;
  e.undo.push(e.map.slice());
  // At most 100 steps, and about 200 MB of them for large images.
  const limit = Math.max(5, Math.min(100, Math.floor(2e8 / (4 * e.map.length))));
  while (e.undo.length > limit) e.undo.shift();
  e.redo = [];
  e.dirty = true;
}

function undo() {
  const e = state.editor;
  if (!e || !e.undo.length) return;
  e.redo.push(e.map.slice()); e.map = e.undo.pop(); e.dirty = true; renderMap();
}

function redo() {
  const e = state.editor;
  if (!e || !e.redo.length) return;
  e.undo.push(e.map.slice()); e.map = e.redo.pop(); e.dirty = true; renderMap();
}

function paintAt(x, y) {
  // A round brush with a soft edge; strength is how far one dab moves a
  // pixel towards full (brush) or no (eraser) attention.
  const e = state.editor;
  const radius = Number(document.getElementById("size").value);
  const strength = Number(document.getElementById("strength").value) / 100;
  const r = Math.ceil(radius);
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      const px = Math.floor(x) + dx, py = Math.floor(y) + dy;
      if (px < 0 || py < 0 || px >= e.width || py >= e.height) continue;
      const d = Math.hypot(px + 0.5 - x, py + 0.5 - y);
      if (d > radius) continue;
      const w = strength * Math.min(1, 1.5 * (1 - d / (radius + 0.5)) + 0.25);
      const i = py * e.width + px;
      e.map[i] = e.tool === "brush" ? e.map[i] + (255 - e.map[i]) * w : e.map[i] * (1 - w);
    }
  }
}

function eventPoint(event) {
  const canvas = document.getElementById("map-canvas");
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * state.editor.width / rect.width,
          (event.clientY - rect.top) * state.editor.height / rect.height];
}

function strokeTo(point) {
  const e = state.editor;
  const [x0, y0] = e.last || point;
  const steps = Math.max(1, Math.ceil(Math.hypot(point[0] - x0, point[1] - y0) / 0.5));
  for (let s = 1; s <= steps; s++) paintAt(x0 + (point[0] - x0) * s / steps, y0 + (point[1] - y0) * s / steps);
  e.last = point;
  const r = Math.ceil(Number(document.getElementById("size").value)) + 1;
  const clamp = (v, hi) => Math.max(0, Math.min(hi, v));
  renderMap([clamp(Math.floor(Math.min(x0, point[0])) - r, e.width),
             clamp(Math.floor(Math.min(y0, point[1])) - r, e.height),
             clamp(Math.ceil(Math.max(x0, point[0])) + r + 1, e.width),
             clamp(Math.ceil(Math.max(y0, point[1])) + r + 1, e.height)]);
}

async function drawReference(id, img, kind, e) {
  const canvas = document.getElementById(id);
  try {
    const grey = await greyPixels(imageUrl(e.key, "map.png", { kind }), e.width, e.height);
    drawOverlay(canvas, img, grey, e.width, e.height, 0.6);
  } catch (err) { canvas.width = 1; canvas.height = 1; }
}

async function openEditor(key) {
  show("");
  const item = await api("api/image/" + keyPath(key));
  const img = await loadImage(imageUrl(key, "picture.png"));
  const width = item.width, height = item.height;
  const model = await greyPixels(imageUrl(key, "map.png", { kind: "model" }), width, height);
  const start = item.edited
    ? await greyPixels(imageUrl(key, "map.png", { kind: "corrected", v: item.version }), width, height)
    : model.slice();
  state.editor = { key, width, height, img, model, map: new Float32Array(start), undo: [], redo: [],
    version: item.version, tool: "brush", last: null, dirty: false, drawing: false };
  const scale = Math.max(1, Math.floor(480 / Math.max(width, height)));
  const shownW = Math.min(width * scale, 720), shownH = Math.round(height * shownW / width);
  for (const id of ["image-canvas", "map-canvas"]) {
    const c = document.getElementById(id);
    c.width = width; c.height = height;
    c.style.width = shownW + "px"; c.style.height = shownH + "px";
  }
  const stack = document.getElementById("stack");
  stack.style.width = shownW + "px"; stack.style.height = shownH + "px";
  document.getElementById("image-canvas").getContext("2d").drawImage(img, 0, 0, width, height);
  const size = document.getElementById("size");
  size.max = Math.max(8, Math.round(Math.max(width, height) / 2));
  size.value = Math.max(1, Math.round(Math.max(width, height) / 12));
  updateLabels();
  setTool("brush");
  renderMap();
  const wrong = item.misclassified ? " (misclassified)" : "";
  document.getElementById("editor-key").textContent = key;
  document.getElementById("editor-caption").textContent =
    `predicted ${item.predicted_class} ${(100 * item.probability).toFixed(1)}%, true ${item.true_class ?? "unknown"}${wrong}`;
  document.getElementById("save-state").textContent = item.edited ? "a corrected map is saved" : "not corrected yet";
  showView("editor");
  drawReference("ref-model", img, "model", state.editor);
  drawReference("ref-cam", img, "cam", state.editor);
  drawReference("ref-gradcam", img, "gradcam", state.editor);
}

async function save() {
  const e = state.editor;
  const canvas = document.createElement("canvas");
  canvas.width = e.width; canvas.height = e.height;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(e.width, e.height);
  for (let i = 0; i < e.map.length; i++) {
    const v = Math.round(e.map[i]);
    data.data[4 * i] = data.data[4 * i + 1] = data.data[4 * i + 2] = v;
    data.data[4 * i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  try {
    const headers = { "Content-Type": "image/png", "If-Match": e.version };
    const body = await api("api/image/" + keyPath(e.key) + "/map", { method: "PUT", headers, body: blob });
    e.version = body.version; e.dirty = false;
    updateCounter(body.summary);
    document.getElementById("save-state").textContent = "saved " + new Date().toLocaleTimeString();
    show(`Saved the corrected map of ${e.key}.`);
  } catch (err) {
    show(err.status === 409 ? "Not saved: " + err.message : "Not saved: " + err.message, true);
  }
}

function updateLabels() {
  for (const id of ["size", "strength", "opacity"]) {
    document.getElementById(id + "-value").textContent = document.getElementById(id).value;
  }
  document.getElementById("map-canvas").style.opacity = document.getElementById("opacity").value / 100;
}

// === Fine-tuning ===

async function loadFinetune() {
  const status = await api("api/finetune", {}, { epochs: document.getElementById("epochs").value, offset: state.logOffset });
  document.getElementById("command").textContent = status.command ||
    "Fine-tuning needs labels: review a dataset (keras-amb review RUN --dataset D).";
  if (status.state === "idle") return status;
  const log = document.getElementById("log");
  log.textContent += status.log;
  log.scrollTop = log.scrollHeight;
  state.logOffset = status.offset;
  const progress = document.getElementById("progress");
  progress.textContent = `${status.state}: epoch ${Math.min(status.epoch, status.epochs)} of ${status.epochs}`;
  progress.dataset.state = status.state;
  if (status.state === "running") {
    clearTimeout(state.polling);
    state.polling = setTimeout(loadFinetune, 1000);
  } else if (status.state === "finished") {
    loadBeforeAfter();
  }
  return status;
}

async function startFinetune() {
  show("");
  try {
    document.getElementById("log").textContent = "";
    state.logOffset = 0;
    await api("api/finetune", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ epochs: Number(document.getElementById("epochs").value) }) });
    loadFinetune();
  } catch (err) { show("Not started: " + err.message, true); }
}

async function loadBeforeAfter() {
  const body = await api("api/before_after");
  const box = document.getElementById("before-after");
  box.replaceChildren();
  for (const row of body.images) {
    const item = await api("api/image/" + keyPath(row.key));
    const img = await loadImage(imageUrl(row.key, "picture.png"));
    const line = document.createElement("div");
    line.className = "row";
    line.dataset.key = row.key;
    line.dataset.before = row.before; line.dataset.after = row.after;
    const label = document.createElement("div");
    label.innerHTML = `<strong></strong><br>distance to the correction:<br>before ${row.before.toFixed(3)}, after ${row.after.toFixed(3)}`;
    label.querySelector("strong").textContent = row.key;
    line.appendChild(label);
    for (const [kind, caption] of [["corrected", "correction"], ["model", "before"], ["after", "after"]]) {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      const grey = await greyPixels(imageUrl(row.key, "map.png", { kind, v: item.version }), item.width, item.height);
      drawOverlay(canvas, img, grey, item.width, item.height, 0.6);
      const fc = document.createElement("figcaption");
      fc.textContent = caption;
      figure.append(canvas, fc);
      line.appendChild(figure);
    }
    box.appendChild(line);
  }
  box.dataset.ready = "1";
}

// === Views and keys ===

function showView(name) {
  document.getElementById("gallery-view").hidden = name !== "gallery";
  document.getElementById("editor-view").hidden = name !== "editor";
  document.getElementById("finetune-view").hidden = name !== "finetune";
  document.getElementById("tab-gallery").classList.toggle("active", name !== "finetune");
  document.getElementById("tab-finetune").classList.toggle("active", name === "finetune");
}

function backToGallery() {
  if (state.editor && state.editor.dirty && !confirm("Leave without saving this map?")) return;
  state.editor = null;
  showView("gallery");
  loadPage();
}

function wire() {
  const mapCanvas = document.getElementById("map-canvas");
  mapCanvas.addEventListener("pointerdown", (event) => {
    if (!state.editor) return;
    mapCanvas.setPointerCapture(event.pointerId);
    pushUndo();
    state.editor.drawing = true; state.editor.last = null;
    strokeTo(eventPoint(event));
  });
  mapCanvas.addEventListener("pointermove", (event) => {
    if (state.editor && state.editor.drawing) strokeTo(eventPoint(event));
  });
  const end = () => { if (state.editor) { state.editor.drawing = false; state.editor.last = null; } };
  mapCanvas.addEventListener("pointerup", end);
  mapCanvas.addEventListener("pointercancel", end);
  document.getElementById("tool-brush").onclick = () => setTool("brush");
  document.getElementById("tool-eraser").onclick = () => setTool("eraser");
  document.getElementById("undo").onclick = undo;
  document.getElementById("redo").onclick = redo;
  document.getElementById("reset").onclick = () => { pushUndo(); state.editor.map = new Float32Array(state.editor.model); renderMap(); };
  document.getElementById("clear").onclick = () => { pushUndo(); state.editor.map.fill(0); renderMap(); };
  document.getElementById("save").onclick = save;
  document.getElementById("back").onclick = backToGallery;
  for (const id of ["size", "strength", "opacity"]) document.getElementById(id).oninput = updateLabels;
  document.getElementById("filter").onchange = () => { state.page = 0; loadPage(); };
  document.getElementById("class").onchange = () => { state.page = 0; loadPage(); };
  document.getElementById("prev").onclick = () => { state.page = Math.max(0, state.page - 1); loadPage(); };
  document.getElementById("next").onclick = () => { state.page += 1; loadPage(); };
  document.getElementById("refresh").onclick = () => loadPage();
  document.getElementById("tab-gallery").onclick = () => (state.editor ? showView("editor") : backToGallery());
  document.getElementById("tab-finetune").onclick = () => { showView("finetune"); loadFinetune(); };
  document.getElementById("epochs").oninput = loadFinetune;
  document.getElementById("start").onclick = startFinetune;
  document.addEventListener("keydown", (event) => {
    if (!state.editor || document.getElementById("editor-view").hidden) return;
    if (event.target.tagName === "INPUT" && event.target.type !== "range") return;
    const k = event.key.toLowerCase();
    const ctrl = event.ctrlKey || event.metaKey;
    const size = document.getElementById("size");
    if (ctrl && k === "z" && !event.shiftKey) { event.preventDefault(); undo(); }
    else if (ctrl && (k === "y" || (k === "z" && event.shiftKey))) { event.preventDefault(); redo(); }
    else if (ctrl && k === "s") { event.preventDefault(); save(); }
    else if (ctrl) return;
    else if (k === "b") setTool("brush");
    else if (k === "e") setTool("eraser");
    else if (k === "[") { size.value = Number(size.value) - 1; updateLabels(); }
    else if (k === "]") { size.value = Number(size.value) + 1; updateLabels(); }
    else if (k === "r") document.getElementById("reset").click();
    else if (k === "c") document.getElementById("clear").click();
    else if (k === "escape") backToGallery();
  });
}

wire();
loadInfo().then(loadPage).catch((err) => show(err.message, true));
