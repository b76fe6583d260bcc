// xai-compress dashboard: everything comes from /v1 with the API key kept in this tab's
// sessionStorage. The key is sent only as an Authorization header, never in a URL.
"use strict";

const KEY = "xai-compress-api-key";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1000;

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", "Bearer " + (options.key || apiKey()));
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (response.status === 401 && !options.key) {
    sessionStorage.removeItem(KEY);
    location.replace("/ui/signin");
    throw new Error("signed out");
  }
  return response;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const percent = (v) => (v == null ? "–" : (100 * v).toFixed(2) + " %");
const ratio = (v) => (v == null ? "–" : v.toFixed(2) + "×");
const count = (v) => (v == null ? "–" : v.toLocaleString("en-US"));

// ---- errors next to fields ------------------------------------------------------------
function clearErrors(form) {
  form.querySelectorAll(".field-error").forEach((p) => (p.textContent = ""));
  form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
  const status = form.querySelector(".form-status");
  if (status) status.textContent = "";
}

function showError(form, slot, message) {
  const target = form.querySelector(`[data-error-for="${slot}"]`);
  if (!target) return false;
  target.textContent = target.textContent ? target.textContent + " " + message : message;
  const input = target.previousElementSibling;
  if (input && input.matches("input, select")) input.setAttribute("aria-invalid", "true");
  return true;
}

function showProblem(form, problem, slotFor) {
  let placed = false;
  for (const error of problem.errors || []) {
    placed = showError(form, slotFor(error.loc || [], problem), error.msg) || placed;
  }
  if (!problem.errors && showError(form, slotFor([], problem), problem.detail)) placed = true;
  if (!placed) form.querySelector(".form-status").textContent = problem.detail || problem.title;
}

// ---- pages ------------------------------------------------------------------------------
async function signinPage() {
  const form = document.getElementById("signin-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const key = form.api_key.value.trim();
    const response = await api("/v1/jobs?limit=1", { key });
    if (!response.ok) {
      showError(form, "api_key", "This key was not accepted (" + response.status + ").");
      return;
    }
    sessionStorage.setItem(KEY, key);
    location.assign("/ui/jobs");
  });
}

async function jobsPage() {
  const body = document.querySelector("#jobs tbody");
  async function refresh() {
    const response = await api("/v1/jobs?limit=50");
    const page = await response.json();
    body.replaceChildren(
      ...page.data.map((job) => {
        const after = job.metrics && job.metrics.after;
        const reduction = job.metrics && job.metrics.reduction;
        return el(
          "tr", { "data-job-id": job.id },
          el("td", {}, el("a", { href: "/ui/jobs/" + encodeURIComponent(job.id), text: job.id })),
          el("td", { class: "status " + job.status, text: job.status }),
          el("td", { text: job.stage || "" }),
          el("td", {}, el("progress", { max: "1", value: String(job.progress || 0) })),
          el("td", { text: after ? percent(after.accuracy) : "" }),
          el("td", { text: reduction ? ratio(reduction.size) + " smaller" : "" }),
          el("td", { text: new Date(job.created_at).toLocaleString() }),
        );
      }),
    );
    document.getElementById("jobs-empty").hidden = page.data.length > 0;
  }
  await refresh();
  setInterval(refresh, POLL_MS);
}

async function jobPage() {
  const id = document.body.dataset.jobId;
  const path = "/v1/jobs/" + encodeURIComponent(id);
  const events = document.querySelector("#job-events tbody");
  let cursor = 0;
  let finished = false;
  document.getElementById("job-cancel").addEventListener("click", () =>
    api(path + "/cancel", { method: "POST" }),
  );

  async function readEvents() {
    for (;;) {
      const page = await (await api(`${path}/events?after=${cursor}&limit=200`)).json();
      for (const event of page.data) {
        events.append(
          el("tr", {},
            el("td", { text: String(event.seq) }),
            el("td", { text: new Date(event.created_at).toLocaleTimeString() }),
            el("td", { text: event.type }),
            el("td", {}, el("code", { text: JSON.stringify(event.data) })),
          ),
        );
        cursor = event.seq;
      }
      if (!page.has_more) return;
    }
  }

  async function refresh() {
    const response = await api(path);
    if (response.status === 404) {
      document.getElementById("job-missing").hidden = false;
      document.getElementById("job-summary").hidden = true;
      finished = true;
      return;
    }
    const job = await response.json();
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status " + job.status;
    document.getElementById("job-stage").textContent = job.stage || "";
    document.getElementById("job-progress").value = job.progress || 0;
    document.getElementById("job-cancel").hidden = TERMINAL.has(job.status);
    if (job.error) {
      const error = document.getElementById("job-error");
      error.hidden = false;
      error.textContent = `${job.error.code}: ${job.error.message}`;
    }
    await readEvents();
    if (TERMINAL.has(job.status)) {
      finished = true;
      if (job.status === "succeeded") await showResults(job);
    }
  }

  async function showResults(job) {
    const m = job.metrics;
    const cells = {
      accuracy: `${percent(m.before.accuracy)} → ${percent(m.after.accuracy)}`,
      parameters: `${count(m.before.parameters)} → ${count(m.after.parameters)}`,
      macs: `${count(m.before.macs)} → ${count(m.after.macs)}`,
      size: `${count(m.before.fp32_bytes)} B → ${count(m.after.packed_bytes)} B (${ratio(m.reduction.size)})`,
    };
    for (const [field, text] of Object.entries(cells)) {
      document.querySelector(`#job-metrics [data-field="${field}"]`).textContent = text;
    }
    const artifacts = await (await api(path + "/artifacts")).json();
    document.getElementById("job-artifacts").replaceChildren(
      ...artifacts.map((artifact) => {
        const button = el("button", { type: "button", class: "link", text: artifact.name });
        button.addEventListener("click", () => download(artifact));
        return el("li", {}, button, ` ${count(artifact.size_bytes)} B`);
      }),
    );
    document.getElementById("job-metrics").hidden = false;
    const report = await api(path + "/report");
    if (report.ok) {
      document.getElementById("job-report").srcdoc = await report.text();
      document.getElementById("job-report-section").hidden = false;
    }
  }

  async function download(artifact) {
    const response = await api(artifact.download_url);
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: artifact.name });
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  while (!finished) {
    await refresh();
    if (!finished) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function newPage() {
  async function fill(kind, select, chosen) {
    const page = await (await api(`/v1/${kind}?limit=100`)).json();
    select.replaceChildren(
      ...page.data.map((item) =>
        el("option", { value: item.id, text: `${item.name || item.id} (${item.status})` }),
      ),
    );
    if (chosen) select.value = chosen;
  }
  const modelSelect = document.getElementById("job-model");
  const datasetSelect = document.getElementById("job-dataset");

  for (const form of document.querySelectorAll("form.upload")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const data = new FormData();
      for (const input of form.querySelectorAll("input")) {
        if (input.type === "file") {
          if (input.files.length) data.append(input.name, input.files[0]);
        } else if (input.value) data.append(input.name, input.value);
      }
      const kind = form.dataset.kind;
      const response = await api("/v1/" + kind, { method: "POST", body: data });
      const body = await response.json();
      if (!response.ok) {
        showProblem(form, body, (loc) => (loc.length > 1 ? String(loc[loc.length - 1]) : "file"));
        return;
      }
      form.querySelector(".form-status").textContent = `Uploaded ${body.id} (${body.status}).`;
      form.dataset.uploaded = body.id;
      await fill(kind, kind === "models" ? modelSelect : datasetSelect, body.id);
    });
  }

  const form = document.getElementById("job-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const steps = [];
    for (const box of form.querySelectorAll("input[data-step]:checked")) {
      const type = box.dataset.step;
      const input = form.querySelector(`input[data-step-field="${type}"]`);
      const number = Number(input.value);
      const value = input.value.trim() !== "" && !Number.isNaN(number) ? number : input.value;
      steps.push({ type, [input.dataset.field]: value });
    }
    const body = {
      model_id: form.model_id.value,
      dataset_id: form.dataset_id.value,
      criterion: form.criterion.value,
      steps,
    };
    const response = await api("/v1/jobs", {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
    });
    const answer = await response.json();
    if (!response.ok) {
      showProblem(form, answer, (loc, problem) => {
        if (loc[1] === "steps" && typeof loc[2] === "number" && steps[loc[2]]) {
          const type = steps[loc[2]].type;
          const field = loc.slice(3).find((part) => part in steps[loc[2]] && part !== "type");
          return field ? `${type}.${field}` : "steps";
        }
        if (loc.length > 1) return String(loc[1]);
        if (problem.code === "model_invalid") return "model_id";
        if (problem.code === "dataset_invalid") return "dataset_id";
        return "";
      });
      return;
    }
    location.assign("/ui/jobs/" + encodeURIComponent(answer.id));
  });
  await Promise.all([fill("models", modelSelect), fill("datasets", datasetSelect)]);
}

// ---- start --------------------------------------------------------------------------------
// Forms are method="post": submitted before this script takes them over, they would send
// their fields in a request body to a page that refuses it, never in a URL.
function ready() {
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "signin.html") return signinPage().then(ready);
  if (!apiKey()) return location.replace("/ui/signin");
  document.querySelector("nav.signed-in").hidden = false;
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.assign("/ui/signin");
  });
  if (page === "jobs.html") return jobsPage().then(ready);
  if (page === "job.html") {
    ready();
    return jobPage();
  }
  if (page === "new.html") return newPage().then(ready);
});
