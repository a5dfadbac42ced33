// The KubeClassify web page: sign in, upload an image, see the label and the top-k as bars;
// start a CSV batch, watch it go (images/s, the time left), cancel it, download or delete its results;
// my images as a gallery by category; daily schedules and their runs; the models; for an admin,
// every account's credits and a refill.
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
  if (!response.ok) {
    const error = new Error(await problem(response));
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

async function fetchBlob(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!response.ok) throw new Error(await problem(response));
  return response.blob();
}

function save(blob, filename) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  link.click();
  URL.revokeObjectURL(link.href);
}

function cell(text) {
  const made = document.createElement("td");
  made.textContent = text ?? "";
  return made;
}

function when(value) {
  return value ? new Date(value).toISOString().slice(0, 16).replace("T", " ") + " UTC" : "";
}

async function signIn(username, password) {
  const form = new URLSearchParams({ username, password });
  const token = await api("/v1/auth/token", { method: "POST", body: form });
  state.token = token.access_token;
  $("login").reset(); // the password leaves the page once it has been used
  await refresh();
  await Promise.all([refreshBatches(), refreshImages(), refreshSchedules()]);
}

async function download(name) {
  save(await fetchBlob(`/v1/batches/${encodeURIComponent(name)}/results.csv`), `${name}.csv`);
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
  const going = page.items.some((b) => b.state === "Pending" || b.state === "Running");
  if (going || state.wasGoing) {
    // while batches run (a schedule's runs among them), and once more after: schedules and credits too
    const again = () => Promise.all([refreshBatches(), refreshSchedules(), refresh()]);
    state.batchTimer = setTimeout(() => again().catch((e) => showError(e.message)), 1500);
  }
  state.wasGoing = going;
}

async function startBatch(file) {
  const body = new FormData();
  body.append("file", file);
  await api("/v1/batches", { method: "POST", body });
  $("batch").reset();
  await refreshBatches();
  await refresh();
}

const SECTIONS = ["classify-section", "batch-section", "images-section", "models-section"];

async function refresh() {
  const me = await api("/v1/me");
  $("username-shown").textContent = me.username;
  $("credits").textContent = me.credits;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  for (const id of SECTIONS) $(id).hidden = false;
  const models = await api("/v1/models");
  const select = $("model");
  select.replaceChildren(
    ...models.map((m) => new Option(m.ready ? m.name : `${m.name} (not ready)`, m.name, m.default, m.default)),
  );
  $("models").tBodies[0].replaceChildren(
    ...models.map((m) => {
      const row = document.createElement("tr");
      row.dataset.name = m.name;
      row.append(
        cell(m.default ? `${m.name} (default)` : m.name),
        cell(m.version),
        cell(m.ready ? "ready" : "not ready"),
        cell(m.description),
        cell((m.labels || []).join(", ")),
      );
      return row;
    }),
  );
  state.admin = me.role === "admin";
  $("accounts-section").hidden = !state.admin;
  if (state.admin) await refreshAccounts();
}

// My images: a gallery with each image's label, a category filter with the counts, download, delete.

async function refreshImages(more = false) {
  const counts = await api("/v1/categories");
  const select = $("category");
  const chosen = select.value;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  select.replaceChildren(
    new Option(`All (${total})`, ""),
    ...Object.keys(counts)
      .sort()
      .map((label) => new Option(`${label} (${counts[label]})`, label)),
  );
  select.value = chosen in counts ? chosen : "";
  const offset = more ? $("gallery").children.length : 0;
  const query = new URLSearchParams({ limit: "24", offset: String(offset) });
  if (select.value) query.set("category", select.value);
  const page = await api(`/v1/images?${query}`);
  if (!more) {
    for (const img of $("gallery").querySelectorAll("img")) URL.revokeObjectURL(img.src);
    $("gallery").replaceChildren();
  }
  $("gallery").append(...page.items.map(imageCard));
  $("more-images").hidden = offset + page.items.length >= page.total;
}

function imageCard(image) {
  const card = document.createElement("figure");
  card.setAttribute("role", "listitem");
  card.dataset.uid = image.uid;
  card.dataset.label = image.label;
  const picture = document.createElement("img");
  picture.alt = image.filename;
  fetchBlob(`/v1/images/${image.uid}/content`)
    .then((blob) => (picture.src = URL.createObjectURL(blob)))
    .catch(() => (picture.alt = `${image.filename} (gone)`));
  const caption = document.createElement("figcaption");
  caption.textContent = `${image.label} · ${(image.score * 100).toFixed(1)}%`;
  caption.title = `${image.filename}, ${image.model_name} ${image.model_version}`;
  card.append(
    picture,
    caption,
    button("Download", "download", async () => save(await fetchBlob(`/v1/images/${image.uid}/content`), image.filename)),
    button("Delete", "delete", async () => {
      await api(`/v1/images/${image.uid}`, { method: "DELETE" });
      await refreshImages();
    }),
  );
  return card;
}

// Daily schedules (when the gateway has a manifest): create, fire, run a date, pause, resume,
// each one's runs, all its results, delete.

async function refreshSchedules() {
  let schedules;
  try {
    schedules = await api("/v1/schedules");
  } catch (e) {
    if (e.status !== 409) throw e;
    $("schedules-section").hidden = true; // no manifest: nothing to schedule here
    return;
  }
  $("schedules-section").hidden = false;
  const open = new Set([...$("schedules").querySelectorAll("tr.runs")].map((r) => r.dataset.name));
  const rows = [];
  for (const s of schedules) {
    rows.push(scheduleRow(s));
    if (open.has(s.name)) rows.push(await runsRow(s.name));
  }
  $("schedules").tBodies[0].replaceChildren(...rows);
}

function scheduleRow(s) {
  const row = document.createElement("tr");
  row.dataset.name = s.name;
  row.dataset.paused = String(s.paused);
  const next = s.paused ? `paused: ${s.reason}` : `${s.next_date} (runs ${when(s.next_run)})`;
  const actions = cell("");
  const path = `/v1/schedules/${encodeURIComponent(s.name)}`;
  const date = document.createElement("input");
  date.type = "date";
  date.className = "run-date";
  const act = (method, suffix, body) => async () => {
    const options = { method };
    if (body) {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(body());
    }
    await api(path + suffix, options);
    await Promise.all([refreshSchedules(), refreshBatches(), refresh()]);
  };
  actions.append(
    button("Fire now", "fire", act("POST", "/fire")),
    date,
    button("Run date", "run", act("POST", "/run", () => ({ date: date.value }))),
    s.paused ? button("Resume", "resume", act("POST", "/resume")) : button("Pause", "pause", act("POST", "/pause")),
    button("Runs", "runs", async () => {
      const shown = row.nextElementSibling;
      if (shown && shown.classList.contains("runs")) shown.remove();
      else row.after(await runsRow(s.name));
    }),
    button("Results CSV", "results", async () => save(await fetchBlob(`${path}/results.csv`), `${s.name}.csv`)),
    button("Delete", "delete", act("DELETE", "")),
  );
  row.append(cell(s.name), cell(`${s.cron} ${s.time_zone}${s.catch_up ? ", catching up" : ""}`),
    cell(s.last_date || "—"), cell(next), actions);
  return row;
}

async function runsRow(name) {
  const runs = await api(`/v1/schedules/${encodeURIComponent(name)}/runs`);
  const row = document.createElement("tr");
  row.className = "runs";
  row.dataset.name = name;
  const list = document.createElement("ul");
  list.append(
    ...runs.map((r) => {
      const item = document.createElement("li");
      const c = r.counts;
      item.dataset.date = r.date;
      item.textContent = `${r.date}: ${r.state}, ${c.classified} classified, ${c.failed} failed of ${c.total}`;
      if (r.message) item.title = r.message;
      return item;
    }),
  );
  if (!runs.length) list.append("no runs yet");
  const wide = cell("");
  wide.colSpan = 5;
  wide.append(list);
  row.append(wide);
  return row;
}

async function createSchedule() {
  const body = { cron: $("cron").value, time_zone: $("time-zone").value, catch_up: $("catch-up").checked };
  if ($("start-date").value) body.start_date = $("start-date").value;
  await api("/v1/schedules", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  await refreshSchedules();
}

// Accounts, for an admin: every balance, and a refill.

async function refreshAccounts() {
  const balances = await api("/v1/admin/credits");
  $("accounts").tBodies[0].replaceChildren(
    ...balances.map((b) => {
      const row = document.createElement("tr");
      row.dataset.name = b.username;
      const amount = document.createElement("input");
      amount.type = "number";
      amount.min = "1";
      amount.className = "amount";
      amount.placeholder = "the usual refill";
      const refill = cell("");
      refill.append(
        amount,
        button("Refill", "refill", async () => {
          const body = amount.value ? { amount: Number(amount.value) } : {};
          await api(`/v1/admin/credits/${encodeURIComponent(b.username)}`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify(body),
          });
          await refresh();
        }),
      );
      row.append(cell(b.username), cell(String(b.credits)), refill);
      return row;
    }),
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
  await Promise.all([refresh(), refreshImages()]);
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
  $("schedule").addEventListener("submit", guarded(createSchedule));
  $("category").addEventListener("change", () => refreshImages().catch((e) => showError(e.message)));
  $("more-images").addEventListener("click", () => refreshImages(true).catch((e) => showError(e.message)));
  $("sign-out").addEventListener("click", () => {
    // Revokes the account's access tokens on the gateway too, not only this page's copy.
    fetch("/v1/auth/sign-out", { method: "POST", headers: { Authorization: `Bearer ${state.token}` } });
    state.token = null;
    clearTimeout(state.batchTimer);
    for (const id of [...SECTIONS, "schedules-section", "accounts-section"]) $(id).hidden = true;
    $("who").hidden = true;
    $("result").hidden = true;
    $("sign-in").hidden = false;
  });
});
