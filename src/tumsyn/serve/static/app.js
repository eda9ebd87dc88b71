// The tumsyn page: pick a source, describe the target, watch the plane under the crosshair
// follow the prompt, synthesize the whole volume, download it. Talks only to this server.
"use strict";

const $ = (id) => document.getElementById(id);
const SLIDERS = ["tr", "te", "ti", "flip_angle"];
const VIEW_SLICE = { axial: 0, coronal: 1, sagittal: 2 };
const state = { model: null, source: null, crosshair: [0, 0, 0], previewSeq: 0, timer: null };

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const postJSON = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

function viewer(canvasId) {
  const nv = new niivue.Niivue({ show3Dcrosshair: true, backColor: [0, 0, 0, 1] });
  nv.attachTo(canvasId);
  nv.setSliceType(nv.sliceTypeAxial);
  return nv;
}

const sourceView = viewer("source-view");
const resultView = viewer("result-view");
sourceView.broadcastTo(resultView, { "2d": true, "3d": true });
resultView.broadcastTo(sourceView, { "2d": true, "3d": true });
sourceView.onLocationChange = (location) => {
  state.crosshair = Array.from(location.mm).slice(0, 3);
  schedule();
};

function target() {
  const t = { modality: $("modality").value };
  for (const name of SLIDERS) {
    const input = $(name);
    if (!input.disabled) t[name] = Number(input.value);
  }
  t.field_strength = Number($("field_strength").value);
  t.manufacturer = $("manufacturer").value;
  const voxel = [0, 1, 2].map((i) => Number($(`voxel-${i}`).value));
  if (voxel.every((v) => v > 0)) t.voxel_size = voxel;
  if ($("age").value !== "") t.age = Number($("age").value);
  if ($("sex").value !== "") t.sex = $("sex").value;
  return t;
}

function fillDefaults() {
  const defaults = state.model.modalities[$("modality").value];
  for (const name of SLIDERS) {
    const value = defaults[name];
    const numeric = typeof value === "number";
    $(name).disabled = !numeric;  // e.g. no TI for a T2w, a variable flip angle
    if (numeric) $(name).value = value;
  }
  $("field_strength").value = String(defaults.field_strength);
  $("manufacturer").value = defaults.manufacturer;
  showSliderValues();
}

function showSliderValues() {
  for (const name of SLIDERS) {
    $(`${name}-value`).textContent = $(name).disabled ? "—" : $(name).value;
  }
}

function schedule() {
  showSliderValues();
  clearTimeout(state.timer);
  state.timer = setTimeout(refresh, 120);
}

async function refresh() {
  showError(null);
  try {
    const body = { target: target(), source: state.source ? state.source.id : null };
    const answer = await (await postJSON("/api/prompt", body)).json();
    $("prompt").textContent = answer.prompt;
    $("warnings").replaceChildren(...answer.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  } catch (error) { showError(error); return; }
  if (state.source) await preview();
}

async function preview() {
  const seq = ++state.previewSeq;
  $("preview-state").textContent = "synthesizing…";
  try {
    const body = { source: state.source.id, target: target(), view: $("view").value, mm: state.crosshair };
    const response = await postJSON("/api/preview", body);
    const blob = await response.blob();
    if (seq !== state.previewSeq) return;  // a newer request is on its way
    const old = $("preview").src;
    $("preview").src = URL.createObjectURL(blob);
    $("preview").dataset.plane = response.headers.get("X-Plane");
    $("preview").dataset.count = String(seq);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    $("preview-state").textContent = `plane ${response.headers.get("X-Plane")}`;
  } catch (error) { if (seq === state.previewSeq) { showError(error); $("preview-state").textContent = ""; } }
}

async function useSource(request) {
  showError(null);
  $("source-info").textContent = "loading…";
  try {
    const source = await (await request()).json();
    state.source = source;
    $("source-info").textContent = `${source.name}: ${source.shape.join(" × ")} voxels of ${source.voxel_size.join(" × ")} mm`;
    source.voxel_size.forEach((v, i) => { $(`voxel-${i}`).value = v; });
    await sourceView.loadVolumes([{ url: source.url, name: source.name }]);
    state.crosshair = Array.from(sourceView.frac2mm([0.5, 0.5, 0.5])).slice(0, 3);
    $("synthesize").disabled = false;
    schedule();
  } catch (error) { $("source-info").textContent = "No source."; showError(error); }
}

async function synthesize() {
  showError(null);
  let job;
  try { job = await (await postJSON("/api/jobs", { source: state.source.id, target: target() })).json(); }
  catch (error) { showError(error); return; }
  const item = document.createElement("li");
  item.id = `job-${job.id}`;
  item.innerHTML = `<span class="name"></span> <progress max="1" value="0"></progress> <span class="state">queued</span>`;
  item.querySelector(".name").textContent = job.name;
  $("jobs").prepend(item);
  follow(job.id, item);
}

async function follow(id, item) {
  let job;
  try { job = await (await api(`/api/jobs/${id}`)).json(); }
  catch (error) { item.querySelector(".state").textContent = error.message; return; }
  item.querySelector("progress").value = job.progress;
  item.querySelector(".state").textContent = job.state;
  if (job.state === "queued" || job.state === "running") { setTimeout(() => follow(id, item), 400); return; }
  if (job.state === "failed") { item.querySelector(".state").textContent = `failed: ${job.error}`; return; }
  await resultView.loadVolumes([{ url: `/api/jobs/${id}/view.nii.gz`, name: `${job.name}.nii.gz` }]);
  $("result-name").textContent = job.name;
  $("result-view").dataset.job = id;
  const links = document.createElement("span");
  links.innerHTML = ` <a class="download-image" download>NIfTI</a> <a class="download-sidecar" download>sidecar</a>`;
  links.querySelector(".download-image").href = `/api/jobs/${id}/image.nii.gz`;
  links.querySelector(".download-sidecar").href = `/api/jobs/${id}/sidecar.json`;
  item.append(links);
  for (const warning of job.warnings) item.append(Object.assign(document.createElement("div"), { className: "muted", textContent: warning }));
}

async function start() {
  state.model = await (await api("/api/model")).json();
  $("model-name").textContent = `model: ${state.model.name}`;
  for (const field of state.model.ignored_fields) {  // the model leaves these out of its prompts
    const input = $(field);
    if (input) { input.disabled = true; input.title = `${state.model.name} ignores ${field} (see its model card)`; }
  }
  for (const modality of Object.keys(state.model.modalities)) $("modality").append(new Option(modality));
  for (const field of state.model.field_strengths) $("field_strength").append(new Option(`${field}`, `${field}`));
  for (const vendor of state.model.manufacturers) $("manufacturer").append(new Option(vendor));
  $("modality").value = "FLAIR";
  fillDefaults();
  $("modality").addEventListener("change", () => { fillDefaults(); schedule(); });
  for (const input of document.querySelectorAll("#target input, #target select")) {
    if (input.id !== "modality") input.addEventListener("input", schedule);
  }
  $("view").addEventListener("change", () => {
    const view = $("view").value;
    sourceView.setSliceType(VIEW_SLICE[view]);
    resultView.setSliceType(VIEW_SLICE[view]);
  });
  $("use-example").addEventListener("click", () => useSource(() => api("/api/sources/example", { method: "POST" })));
  $("use-simulated").addEventListener("click", () => useSource(() =>
    api(`/api/sources/simulated?seed=${Math.floor(Math.random() * 1000)}`, { method: "POST" })));
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (file) useSource(() => api(`/api/sources/upload?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file }));
  });
  $("synthesize").addEventListener("click", synthesize);
  schedule();
}

start().catch(showError);
