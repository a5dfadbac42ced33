// The KubeClassify web page: sign in, upload an image, see the label and the top-k as bars;
// start a CSV batch, watch it go (images/s, the time left), cancel it, download or delete its results.
// The token stays in this page's memory only; it is gone on reload.
"use strict";

const state = { token: null, batchTimer: null };
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) throw new Error(await problem(response));
  return response.status === 204 ? null : response.json();
}

async function signIn(username, password) {
  const form = new URLSearchParams({ username, password });
  const token = await api("/v1/auth/token", { method: "POST", body: form });
  state.token = token.access_token;
  await refresh();
  await refreshBatches();
}

async function download(name) {
  const response = await fetch(`/v1/batches/${encodeURIComponent(name)}/results.csv`, {
    headers: { Authorization: `Bearer ${state.token}` },
  });
  if (!response.ok) throw new Error(await problem(response));
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${name}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}

function duration(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  return m ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

function button(text, className, work) {
  const made = document.createElement("button");
  made.type = "button";
  made.className = className;
  made.textContent = text;
  made.addEventListener("click", () => work().catch((e) => showError(e.message)));
  return made;
}

function batchRow(batch) {
  const row = document.createElement("tr");
  row.dataset.name = batch.name;
  row.dataset.state = batch.state;
  const cells = [batch.name, batch.state, "", ""].map((text) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    return cell;
  });
  cells[1].className = `state-${batch.state}`;
  const c = batch.counts;
  const done = c.classified + c.failed;
  const ended = batch.state === "Succeeded" || batch.state === "Failed";
  const bar = document.createElement("progress");
  bar.max = c.total || 1;
  bar.value = Math.min(done, bar.max);
  const text = document.createElement("span");
  text.className = "progress";
  let said = `${done}/${c.total}` + (c.failed ? ` (${c.failed} failed)` : "");
  if (!ended && batch.images_per_second) {
    said += ` · ${batch.images_per_second.toFixed(1)} images/s`;
    if (batch.estimated_completion_time) {
      said += ` · ${duration((Date.parse(batch.estimated_completion_time) - Date.now()) / 1000)} left`;
    }
  }
  text.textContent = said;
  cells[2].append(bar, " ", text);
  if (batch.message) cells[1].title = batch.message;
  if (ended) {
    cells[3].append(
      button("Download CSV", "download", () => download(batch.name)),
      button("Delete", "delete", async () => {
        await api(`/v1/batches/${encodeURIComponent(batch.name)}`, { method: "DELETE" });
        await refreshBatches();
      }),
    );
  } else {
    cells[3].append(
      button("Cancel", "cancel", async () => {
        await api(`/v1/batches/${encodeURIComponent(batch.name)}/cancel`, { method: "POST" });
        await refreshBatches();
        await refresh();
      }),
    );
  }
  row.append(...cells);
  return row;
}

async function refreshBatches() {
  if (!state.token) return;
  const page = await api("/v1/batches?limit=20");
  $("batches").tBodies[0].replaceChildren(...page.items.map(batchRow));
  clearTimeout(state.batchTimer);
  if (page.items.some((b) => b.state === "Pending" || b.state === "Running")) {
    state.batchTimer = setTimeout(() => refreshBatches().catch((e) => showError(e.message)), 1500);
  }
}

async function startBatch(file) {
  const body = new FormData();
  body.append("file", file);
  await api("/v1/batches", { method: "POST", body });
  $("batch").reset();
  await refreshBatches();
  await refresh();
}

async function refresh() {
  const me = await api("/v1/me");
  $("username-shown").textContent = me.username;
  $("credits").textContent = me.credits;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("classify-section").hidden = false;
  $("batch-section").hidden = false;
  const models = await api("/v1/models");
  const select = $("model");
  select.replaceChildren(
    ...models.map((m) => new Option(m.ready ? m.name : `${m.name} (not ready)`, m.name, m.default, m.default)),
  );
}

function drawChart(topK) {
  const rows = topK.map(({ label, score }) => {
    const row = document.createElement("div");
    row.className = "row";
    row.setAttribute("role", "listitem");
    row.dataset.label = label;
    row.dataset.score = String(score);
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(Math.max(0, Math.min(1, score)) * 100).toFixed(1)}%`;
    track.append(bar);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(score * 100).toFixed(1)}%`;
    row.append(name, track, value);
    return row;
  });
  $("chart").replaceChildren(...rows);
}

async function classify(file, model) {
  const body = new FormData();
  body.append("file", file);
  if (model) body.append("model", model);
  const answer = await api("/v1/classify", { method: "POST", body });
  $("label").textContent = answer.label;
  $("score").textContent = `${(answer.score * 100).toFixed(1)}%`;
  $("model-used").textContent = `${answer.model_name} ${answer.model_version}`.trim();
  $("uid").textContent = answer.uid;
  drawChart(answer.top_k);
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("result").hidden = false;
  await refresh();
}

function guarded(work) {
  return async (event) => {
    event.preventDefault();
    showError("");
    try {
      await work();
    } catch (e) {
      showError(e.message);
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", guarded(() => signIn($("username").value, $("password").value)));
  $("register").addEventListener(
    "click",
    guarded(async () => {
      const account = { username: $("username").value, password: $("password").value };
      await api("/v1/accounts", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(account),
      });
      await signIn(account.username, account.password);
    }),
  );
  $("classify").addEventListener("submit", guarded(() => classify($("file").files[0], $("model").value)));
  $("batch").addEventListener("submit", guarded(() => startBatch($("csv").files[0])));
  $("sign-out").addEventListener("click", () => {
    // Revokes the account's access tokens on the gateway too, not only this page's copy.
    fetch("/v1/auth/sign-out", { method: "POST", headers: { Authorization: `Bearer ${state.token}` } });
    state.token = null;
    clearTimeout(state.batchTimer);
    $("batch-section").hidden = true;
    $("who").hidden = true;
    $("classify-section").hidden = true;
    $("result").hidden = true;
    $("sign-in").hidden = false;
  });
});
