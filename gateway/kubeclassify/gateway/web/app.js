// The KubeClassify web page: sign in, upload an image, see the label and the top-k as bars.
// The token stays in this page's memory only; it is gone on reload.
"use strict";

const state = { token: null };
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
  return response.json();
}

async function signIn(username, password) {
  const form = new URLSearchParams({ username, password });
  const token = await api("/v1/auth/token", { method: "POST", body: form });
  state.token = token.access_token;
  await refresh();
}

async function refresh() {
  const me = await api("/v1/me");
  $("username-shown").textContent = me.username;
  $("credits").textContent = me.credits;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("classify-section").hidden = false;
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
  $("sign-out").addEventListener("click", () => {
    state.token = null;
    $("who").hidden = true;
    $("classify-section").hidden = true;
    $("result").hidden = true;
    $("sign-in").hidden = false;
  });
});
