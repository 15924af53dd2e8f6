// The gateway's web page: pick a preset, set a few values, generate, watch the jobs, browse the gallery.
// Talks only to the v1 API of the server that serves it; no build step, no dependencies.

const KEY_STORAGE = "comfy-gateway.api-key";
const PRESET_STORAGE = "comfy-gateway.preset";
const PAGE_SIZE = 24;
const POLL_MS = 1000;

const $ = (selector) => document.querySelector(selector);
const state = { key: "", presets: new Map(), detail: null, galleryOffset: 0, galleryTotal: 0, galleryEvents: null };

class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- talking to the API -------------------------------------------------------------------------

async function api(method, path, body) {
  const init = { method, headers: { "X-API-Key": state.key } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, `The gateway could not be reached (${error.message}).`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error;
    const message = error && error.message ? error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, error && error.field);
  }
  return data;
}

function streamUrl(path, query = {}) {
  const params = new URLSearchParams({ ...query, api_key: state.key });
  return `${path}?${params}`;
}

// ---- messages -----------------------------------------------------------------------------------

function showError(error) {
  const box = $("#message");
  const prefix = error instanceof ApiError && error.status ? `Error ${error.status}: ` : "";
  box.textContent = prefix + (error.message || String(error));
  box.className = "message";
  box.hidden = false;
  if (error instanceof ApiError && error.field) {
    const input = document.getElementById(`param-${error.field}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }
}

function clearMessage() {
  $("#message").hidden = true;
  for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

// ---- presets and their parameters ---------------------------------------------------------------

function initials(name) {
  const words = name.match(/[\p{L}\p{N}]+/gu) || ["?"];
  return words.slice(0, 2).map((w) => w[0].toUpperCase()).join("");
}

function renderPresets(presets) {
  const box = $("#presets");
  box.querySelectorAll(".preset").forEach((node) => node.remove());
  $("#presets-empty").hidden = presets.length > 0;
  if (!presets.length) $("#presets-empty").textContent = "This gateway has no presets.";
  for (const preset of presets) {
    const cover = preset.cover_url
      ? el("img", { class: "cover", src: preset.cover_url, alt: "", loading: "lazy" })
      : el("span", { class: "cover", "aria-hidden": "true", text: initials(preset.name) });
    const about = (preset.description || "").split(/(?<=\.)\s/)[0];
    box.append(el("label", { class: "preset", "data-slug": preset.slug },
      el("input", { type: "radio", name: "preset", value: preset.slug }),
      cover,
      el("span", { class: "name", text: preset.name }),
      about ? el("span", { class: "about", text: about }) : null));
  }
}

function humanize(name) {
  const words = name.replace(/_/g, " ");
  return words[0].toUpperCase() + words.slice(1);
}

function rangeText(p) {
  const parts = [];
  const bounded = p.maximum !== null && p.maximum <= Number.MAX_SAFE_INTEGER;
  if (p.minimum !== null && bounded) parts.push(`${p.minimum}–${p.maximum}`);
  else if (p.minimum !== null) parts.push(`at least ${p.minimum}`);
  if (p.multiple_of) parts.push(`multiple of ${p.multiple_of}`);
  return parts.join(", ");
}

function parameterField(p) {
  const id = `param-${p.name}`;
  const hintId = `${id}-hint`;
  const shown = p.default === null || p.default === undefined || p.default === "" ? null : String(p.default);
  let input;
  if (Array.isArray(p.allowed)) {
    input = el("select", { id, name: p.name, "aria-describedby": hintId },
      el("option", { value: "", text: shown ? `Preset's: ${shown}` : "Preset's" }),
      ...p.allowed.map((v) => el("option", { value: String(v), text: String(v) })));
  } else if (p.type === "string" && (p.max_length === null || p.max_length > 500)) {
    input = el("textarea", { id, name: p.name, rows: 2, maxlength: p.max_length, "aria-describedby": hintId });
  } else if (p.type === "string") {
    input = el("input", { id, name: p.name, type: "text", placeholder: shown, "aria-describedby": hintId });
  } else {
    input = el("input", {
      id, name: p.name, type: "number", inputmode: "numeric", min: p.minimum, max: p.maximum,
      step: p.multiple_of || (p.type === "integer" ? 1 : "any"),
      placeholder: shown ?? (p.name === "seed" ? "random" : null), "aria-describedby": hintId,
    });
  }
  input.dataset.type = p.type;
  const range = rangeText(p);
  const hint = [p.description, range && `(${range})`].filter(Boolean).join(" ");
  return el("div", { class: input.tagName === "TEXTAREA" ? "field wide" : "field" },
    el("label", { for: id, text: humanize(p.name) }), input, el("p", { class: "hint", id: hintId, text: hint }));
}

async function selectPreset(slug) {
  clearMessage();
  localStorage.setItem(PRESET_STORAGE, slug);
  $("#generate").disabled = true;
  try {
    state.detail = await api("GET", `/api/v1/presets/${encodeURIComponent(slug)}`);
  } catch (error) {
    showError(error);
    return;
  }
  const fields = $("#parameter-fields");
  fields.replaceChildren(...state.detail.parameters.map(parameterField));
  $("#parameters").hidden = false;
  $("#generate").disabled = false;
}

async function loadPresets() {
  const { presets } = await api("GET", "/api/v1/presets");
  state.presets = new Map(presets.map((p) => [p.slug, p]));
  renderPresets(presets);
  const remembered = localStorage.getItem(PRESET_STORAGE);
  const slug = state.presets.has(remembered) ? remembered : presets[0]?.slug;
  if (slug) {
    document.querySelector(`.preset input[value="${CSS.escape(slug)}"]`).checked = true;
    await selectPreset(slug);
  }
}

function requestBody() {
  const body = {};
  for (const input of $("#parameter-fields").querySelectorAll("input, select, textarea")) {
    const raw = input.value.trim();
    if (raw === "") continue;
    const number = Number(raw);
    const numeric = input.dataset.type === "integer" || input.dataset.type === "number";
    body[input.name] = numeric && raw !== "" && Number.isFinite(number) ? number : raw;
  }
  return body;
}

async function generate(event) {
  event.preventDefault();
  clearMessage();
  const slug = state.detail?.slug;
  if (!slug) return;
  const button = $("#generate");
  button.disabled = true;
  try {
    const { jobs } = await api("POST", `/api/v1/generate/${encodeURIComponent(slug)}`, requestBody());
    for (const job of [...jobs].reverse()) watchJob(job.job_id, state.detail.name);  // first on top
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ---- jobs ---------------------------------------------------------------------------------------

const TERMINAL = new Set(["done", "failed"]);
const STATUS_TEXT = { queued: "Queued", pending: "Waiting", processing: "Generating", done: "Done", failed: "Failed" };

function jobCard(id, presetName) {
  const card = el("li", { class: "job", "data-job-id": id, "data-status": "queued" },
    el("div", { class: "head" },
      el("span", { class: "state", text: STATUS_TEXT.queued }),
      el("span", { class: "detail", text: presetName })),
    el("progress", { max: 100, "aria-label": `Progress of job ${id.slice(0, 8)}` }),
    el("p", { class: "detail note", text: "Waiting in the queue" }),
    el("img", { class: "preview", alt: "Live preview", hidden: true }),
    el("a", { class: "result", hidden: true }, el("img", { alt: "Result image" })),
    el("p", { class: "error", hidden: true }),
    el("button", { type: "button", class: "danger cancel", text: "Cancel" }));
  card.querySelector(".cancel").addEventListener("click", () => cancelJob(id, card));
  $("#jobs-empty").hidden = true;
  $("#jobs").prepend(card);
  return card;
}

function showProgress(card, progress) {
  const bar = card.querySelector("progress");
  bar.value = progress.percent;
  const node = progress.node_type ? ` (${progress.node_type})` : "";
  card.querySelector(".note").textContent = progress.total_steps
    ? `Step ${progress.step} of ${progress.total_steps}${node}`
    : `Running${node}`;
}

function showQueue(card, position) {
  card.querySelector(".note").textContent = position ? `Waiting: number ${position} in the queue` : "Waiting";
}

function showRecord(card, record) {
  card.dataset.status = record.status;
  card.querySelector(".state").textContent = STATUS_TEXT[record.status] || record.status;
  const bar = card.querySelector("progress");
  if (record.status === "pending") {
    bar.removeAttribute("value");
    showQueue(card, record.queue_position);
  } else if (record.status === "processing") {
    if (record.progress) showProgress(card, record.progress);
    else card.querySelector(".note").textContent = "Starting";
  } else if (record.status === "done") {
    bar.value = 100;
    const seed = record.result?.seed;
    card.querySelector(".note").textContent = seed !== null && seed !== undefined ? `Seed ${seed}` : "Done";
    const link = card.querySelector(".result");
    if (record.result) {
      link.href = record.result.image_url;
      link.querySelector("img").src = record.result.image_url;
      link.hidden = false;
      card.querySelector(".preview").hidden = true;
    }
  } else if (record.status === "failed") {
    bar.value = 0;
    card.querySelector(".note").textContent = "";
    const error = card.querySelector(".error");
    error.textContent = record.error || "failed";
    error.hidden = false;
    card.querySelector(".preview").hidden = true;
  }
  card.querySelector(".cancel").hidden = TERMINAL.has(record.status);
}

function watchJob(id, presetName) {
  const card = jobCard(id, presetName);
  const events = new EventSource(streamUrl(`/api/v1/job/${encodeURIComponent(id)}/events`, { previews: 1 }));
  const record = (e) => showRecord(card, JSON.parse(e.data));
  events.addEventListener("job", record);
  events.addEventListener("end", (e) => {
    events.close();
    record(e);
  });
  events.addEventListener("queue", (e) => showQueue(card, JSON.parse(e.data).queue_position));
  events.addEventListener("progress", (e) => showProgress(card, JSON.parse(e.data)));
  events.addEventListener("preview", (e) => {
    const preview = card.querySelector(".preview");
    preview.src = JSON.parse(e.data).image;
    preview.hidden = false;
  });
  events.addEventListener("error", () => {
    // CLOSED: the server refused the stream (or has none): follow the job by asking for its record.
    if (events.readyState === EventSource.CLOSED && !TERMINAL.has(card.dataset.status)) pollJob(id, card);
  });
}

async function pollJob(id, card) {
  while (!TERMINAL.has(card.dataset.status)) {
    try {
      showRecord(card, await api("GET", `/api/v1/job/${encodeURIComponent(id)}`));
    } catch (error) {
      showError(error);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function cancelJob(id, card) {
  clearMessage();
  try {
    showRecord(card, await api("DELETE", `/api/v1/job/${encodeURIComponent(id)}`));
  } catch (error) {
    showError(error);
  }
}

// ---- gallery ------------------------------------------------------------------------------------

function galleryItem(image) {
  const when = new Date(image.created_at).toLocaleString();
  const alt = `${image.preset} image, seed ${image.seed ?? "unknown"}, made ${when}`;
  return el("li", { "data-image-id": image.id },
    el("a", { href: image.image_url, title: alt },
      el("img", { src: image.thumb_url || image.image_url, alt, loading: "lazy" })));
}

function showGalleryInfo() {
  const { galleryOffset: offset, galleryTotal: total } = state;
  const shown = $("#gallery").children.length;
  $("#gallery-status").textContent = total ? `${total} image${total === 1 ? "" : "s"}, newest first.` : "No images yet.";
  $("#page-info").textContent = total ? `${offset + 1}–${offset + shown} of ${total}` : "";
  $("#newer").disabled = offset === 0;
  $("#older").disabled = offset + shown >= total;
}

async function loadGallery(offset) {
  let page;
  try {
    page = await api("GET", `/api/v1/images?limit=${PAGE_SIZE}&offset=${offset}`);
  } catch (error) {
    $("#gallery-status").textContent = error.status === 404
      ? "This gateway has no gallery."
      : `The gallery could not be loaded: ${error.message}`;
    return false;
  }
  state.galleryOffset = offset;
  state.galleryTotal = page.total;
  $("#gallery").replaceChildren(...page.images.map(galleryItem));
  showGalleryInfo();
  return true;
}

function followGallery() {
  state.galleryEvents?.close();
  const events = new EventSource(streamUrl("/api/v1/images/events"));
  events.addEventListener("image", (e) => {
    state.galleryTotal += 1;
    if (state.galleryOffset === 0) {
      const list = $("#gallery");
      list.prepend(galleryItem(JSON.parse(e.data)));
      while (list.children.length > PAGE_SIZE) list.lastElementChild.remove();
    }
    showGalleryInfo();
  });
  state.galleryEvents = events;
}

// ---- the key and start-up -----------------------------------------------------------------------

async function start() {
  clearMessage();
  try {
    await loadPresets();
  } catch (error) {
    showError(error);
    return;
  }
  if (await loadGallery(0)) followGallery();
}

function forget() {
  localStorage.removeItem(KEY_STORAGE);
  state.key = "";
  state.galleryEvents?.close();
  $("#api-key").value = "";
  renderPresets([]);
  $("#presets-empty").textContent = "Enter your API key to see the presets.";
  $("#parameters").hidden = true;
  $("#generate").disabled = true;
  $("#gallery").replaceChildren();
  $("#gallery-status").textContent = "Enter your API key to see the gallery.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("#api-key").value.trim();
    localStorage.setItem(KEY_STORAGE, state.key);
    start();
  });
  $("#forget-key").addEventListener("click", forget);
  $("#presets").addEventListener("change", (event) => {
    if (event.target.name === "preset") selectPreset(event.target.value);
  });
  $("#generate-form").addEventListener("submit", generate);
  $("#newer").addEventListener("click", () => loadGallery(Math.max(0, state.galleryOffset - PAGE_SIZE)));
  $("#older").addEventListener("click", () => loadGallery(state.galleryOffset + PAGE_SIZE));
  state.key = localStorage.getItem(KEY_STORAGE) || "";
  if (state.key) {
    $("#api-key").value = state.key;
    start();
  }
});
