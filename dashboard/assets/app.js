// Tsunagu dashboards: log in, pick a dashboard, draw its panels with
// ECharts, and reload the panels a change touches when the server says the
// snapshot changed (server-sent events). No data is stored in the browser.
"use strict";

const TEXT = {
  en: {
    skip: "Skip to content", logout: "Log out", login_title: "Log in", user: "User",
    password: "Password", project: "Project (optional)", login: "Log in",
    loading: "Loading…", withheld: "withheld (fewer than k persons)", no_rows: "No rows to show.",
    released: "Numbers are released under the disclosure rules: cells under k persons are withheld, counts are rounded.",
    exact: "Exact numbers (steward).", updated: "Updated", apply: "Apply", live: "Live: pages update when cohorts change.",
    offline: "Connection to the server lost; retrying…", male: "male", female: "female", logged_in_as: "",
  },
  ja: {
    skip: "本文へ移動", logout: "ログアウト", login_title: "ログイン", user: "ユーザー",
    password: "パスワード", project: "プロジェクト（任意）", login: "ログイン",
    loading: "読み込み中…", withheld: "非表示（k人未満）", no_rows: "表示する行がありません。",
    released: "数値は公表規則に従います：k人未満のセルは非表示、件数は丸めています。",
    exact: "正確な数値（管理者）。", updated: "更新", apply: "適用", live: "ライブ：コホートが変わるとページが更新されます。",
    offline: "サーバーとの接続が切れました。再接続中…", male: "男性", female: "女性", logged_in_as: "",
  },
};

const state = {
  lang: (navigator.language || "en").startsWith("ja") ? "ja" : "en",
  me: null,
  list: [],
  board: null,
  params: {},
  charts: [],
  snapshot: null,
  prefectures: null,
  events: null,
};
if (localStorage.getItem("tsunagu.lang")) state.lang = localStorage.getItem("tsunagu.lang");

const $ = (id) => document.getElementById(id);
const t = (key) => (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.en[key] || key;
const pick = (obj, key) => (state.lang === "ja" && obj[key + "_ja"]) || obj[key] || "";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(path, options) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin", headers: { "Content-Type": "application/json" } }, options || {}));
  let body = null;
  const text = await res.text();
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: text }; }
  if (!res.ok) {
    const err = new Error((body && body.error) || res.statusText);
    err.status = res.status;
    throw err;
  }
  return body;
}

function applyLanguage() {
  document.documentElement.lang = state.lang;
  $("lang").textContent = state.lang === "ja" ? "English" : "日本語";
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
}

function formatNumber(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return v.toLocaleString(state.lang === "ja" ? "ja-JP" : "en-US", { maximumFractionDigits: 3 });
  return String(v);
}

// ---------- login ----------

function showLogin() {
  state.me = null;
  // Nothing the last viewer saw stays in the page.
  disposeCharts();
  state.board = null;
  state.params = {};
  $("panels").replaceChildren();
  $("title").textContent = "";
  $("description").textContent = "";
  $("login").hidden = false;
  $("board").hidden = true;
  $("logout").hidden = true;
  $("nav").replaceChildren();
  $("who").textContent = "";
  closeEvents();
  $("login").elements.user.focus();
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target.elements;
  $("login-error").textContent = "";
  const button = ev.target.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    state.me = await api("/api/login", { method: "POST", body: JSON.stringify({ user: f.user.value, password: f.password.value, database: f.database.value }) });
    f.password.value = "";
    await start();
  } catch (e) {
    f.password.value = "";
    $("login-error").textContent = e.message;
    f.password.focus();
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("/api/logout", { method: "POST" }); } catch (_) { /* already gone */ }
  showLogin();
});

$("lang").addEventListener("click", () => {
  state.lang = state.lang === "ja" ? "en" : "ja";
  localStorage.setItem("tsunagu.lang", state.lang);
  applyLanguage();
  if (state.me) { renderNav(); if (state.board) renderBoard(state.board, false); }
});

// ---------- dashboards ----------

async function start() {
  $("login").hidden = true;
  $("logout").hidden = false;
  $("who").textContent = `${state.me.user} (${state.me.role})${state.me.database ? " · " + state.me.database : ""} · ${state.me.store}`;
  state.list = await api("/api/dashboards");
  if (!state.prefectures) state.prefectures = await api("/api/prefectures");
  renderNav();
  openEvents();
  await route();
}

function currentId() {
  const m = location.hash.match(/^#\/([A-Za-z0-9_-]+)/);
  return m ? m[1] : (state.list[0] && state.list[0].id);
}

function renderNav() {
  const id = currentId();
  $("nav").replaceChildren(...state.list.map((d) => el("a", { href: "#/" + d.id, "aria-current": d.id === id ? "page" : null, text: pick(d, "title") })));
}

async function route() {
  if (!state.me) return;
  const id = currentId();
  if (!id) return;
  renderNav();
  try {
    const board = await api("/api/dashboards/" + encodeURIComponent(id));
    state.params = Object.fromEntries((board.param || []).map((p) => [p.name, p.default]));
    const q = new URLSearchParams(location.hash.split("?")[1] || "");
    for (const [k, v] of q) if (k in state.params) state.params[k] = v;
    state.board = board;
    state.snapshot = board.snapshot;
    renderBoard(board, true);
  } catch (e) {
    if (e.status === 401) return showLogin();
    $("status").textContent = e.message;
  }
}

window.addEventListener("hashchange", route);

function disposeCharts() {
  for (const c of state.charts) if (c) c.dispose();
  state.charts = [];
}

function renderBoard(board, focus) {
  disposeCharts();
  $("board").hidden = false;
  $("board").dataset.dashboard = board.id;
  $("title").textContent = pick(board, "title");
  $("description").textContent = pick(board, "description");
  renderParams(board);
  $("status").textContent = (state.me.role === "steward" ? t("exact") : t("released")) + " " + t("live");
  const panels = board.panels.map((p, i) => {
    const section = el("section", { class: "panel " + p.chart, "data-panel": String(i), "data-chart": p.chart, "data-state": "loading", "aria-labelledby": `panel-${i}-title` },
      el("h2", { id: `panel-${i}-title`, text: pick(p, "title") }),
      el("div", { class: "body", text: t("loading") }),
      pick(p, "note") ? el("p", { class: "note", text: pick(p, "note") }) : null);
    return section;
  });
  $("panels").replaceChildren(...panels);
  board.panels.forEach((_, i) => loadPanel(i));
  if (focus) $("main").focus({ preventScroll: true });
}

function renderParams(board) {
  const form = $("params");
  const params = board.param || [];
  form.hidden = params.length === 0;
  if (!params.length) { form.replaceChildren(); return; }
  const inputs = params.map((p) => el("label", {}, el("span", { text: pick(p, "label") }), el("input", { name: p.name, value: state.params[p.name], pattern: "[A-Za-z0-9._:-]{1,64}", required: "" })));
  form.replaceChildren(...inputs, el("button", { type: "submit", text: t("apply") }));
  form.onsubmit = (ev) => {
    ev.preventDefault();
    for (const p of params) state.params[p.name] = form.elements[p.name].value.trim();
    const q = new URLSearchParams(state.params).toString();
    const target = `#/${board.id}?${q}`;
    if (location.hash === target) renderBoard(board, false); else location.hash = target;
  };
}

let requests = 0;

async function loadPanel(i) {
  const board = state.board;
  const p = board.panels[i];
  const section = document.querySelector(`[data-panel="${i}"]`);
  if (!section) return;
  section.dataset.state = "loading";
  section.setAttribute("aria-busy", "true");
  const request = String(++requests);
  section.dataset.request = request;
  // Only the latest request of a panel still on the page draws.
  const current = () => state.board === board && section.isConnected && section.dataset.request === request;
  const q = new URLSearchParams(state.params).toString();
  try {
    const data = await api(`/api/dashboards/${encodeURIComponent(board.id)}/panels/${i}${q ? "?" + q : ""}`);
    if (!current()) return;
    draw(section, i, p, data);
    section.dataset.snapshotStore = String(data.snapshot.store);
    section.dataset.snapshotCohorts = String(data.snapshot.cohorts);
    section.dataset.rows = String(data.rows.length);
    section.dataset.state = "ready";
  } catch (e) {
    if (e.status === 401) return showLogin();
    if (!current()) return;
    const body = section.querySelector(".body");
    body.replaceChildren(el("p", { class: "panel-error", role: "alert", text: e.message }));
    section.dataset.state = "error";
  } finally {
    section.removeAttribute("aria-busy");
  }
}

// ---------- drawing ----------

function col(data, name) {
  const i = data.columns.findIndex((c) => c.name === name);
  return i;
}

function label(v) {
  if (v === null || v === undefined) return "—";
  return String(v);
}

function draw(section, i, p, data) {
  const body = section.querySelector(".body");
  if (state.charts[i]) { state.charts[i].dispose(); state.charts[i] = null; }
  if (p.chart === "table") { body.replaceChildren(table(data)); return; }
  if (!data.rows.length) { body.replaceChildren(el("p", { text: t("no_rows") })); return; }
  if (p.chart === "number") {
    if (col(data, p.y) < 0) throw new Error(`the query has no column ${p.y}`);
    const v = data.rows[0][col(data, p.y)];
    body.replaceChildren(el("p", { class: "number", "data-value": v === null ? "" : String(v), text: v === null ? t("withheld") : formatNumber(v) }));
    return;
  }
  const box = el("div", { class: "chart", role: "img", "aria-label": pick(p, "title") });
  // The numbers behind the chart, for screen readers and keyboard users.
  const details = el("details", {}, el("summary", { text: state.lang === "ja" ? "数値を表示" : "Show the numbers" }), table(data));
  body.replaceChildren(box, details);
  const chart = echarts.init(box, null, { renderer: "canvas" });
  state.charts[i] = chart;
  chart.setOption(option(p, data));
}

function table(data) {
  if (!data.rows.length) return el("p", { text: t("no_rows") });
  const head = el("tr", {}, ...data.columns.map((c) => el("th", { scope: "col", text: c.name })));
  const rows = data.rows.map((r) => el("tr", {}, ...r.map((v, j) => {
    const num = data.columns[j].kind === "number";
    if (v === null && num) return el("td", { class: "num withheld", title: t("withheld"), text: "<k" });
    return el("td", { class: num ? "num" : null, "data-value": v === null ? "" : String(v), text: num ? formatNumber(v) : label(v) });
  })));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function categories(data, xi) {
  const seen = new Map();
  for (const r of data.rows) { const k = label(r[xi]); if (!seen.has(k)) seen.set(k, r[xi]); }
  const keys = [...seen.keys()];
  const numeric = [...seen.values()].every((v) => typeof v === "number" || v === null);
  if (numeric) keys.sort((a, b) => (seen.get(a) ?? Infinity) - (seen.get(b) ?? Infinity));
  else if ([...seen.values()].every((v) => typeof v === "string" && /^\d{4}-\d{2}/.test(v))) keys.sort();
  return keys;
}

function option(p, data) {
  const xi = col(data, p.x), yi = col(data, p.y), si = p.series ? col(data, p.series) : -1;
  const base = {
    animation: false,
    tooltip: { trigger: p.chart === "line" ? "axis" : "item", valueFormatter: (v) => (v === null || v === undefined ? t("withheld") : formatNumber(v)) },
    grid: { left: 60, right: 20, top: 40, bottom: 40, containLabel: true },
  };
  if (xi < 0 || yi < 0) throw new Error(`the query has no column ${xi < 0 ? p.x : p.y}`);
  if (p.chart === "funnel") {
    return Object.assign(base, { series: [{ type: "funnel", sort: "none", label: { formatter: "{b}: {c}" }, data: data.rows.map((r) => ({ name: label(r[xi]), value: r[yi] })) }] });
  }
  if (p.chart === "map") return mapOption(base, data, xi, yi);
  if (p.chart === "graph") return graphOption(base, data, xi, si, yi);
  const cats = categories(data, xi);
  const groups = new Map();
  for (const r of data.rows) {
    const s = si >= 0 ? label(r[si]) : p.y;
    if (!groups.has(s)) groups.set(s, new Map());
    groups.get(s).set(label(r[xi]), r[yi]);
  }
  if (p.chart === "pyramid") {
    const names = [...groups.keys()];
    const bandLabel = (c) => (/^\d+$/.test(c) ? `${c}–${Number(c) + 9}` : c);
    return Object.assign(base, {
      legend: { top: 0 },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, valueFormatter: (v) => (v === null || v === undefined ? t("withheld") : formatNumber(Math.abs(v))) },
      xAxis: { type: "value", axisLabel: { formatter: (v) => formatNumber(Math.abs(v)) } },
      yAxis: { type: "category", data: cats.map(bandLabel), axisTick: { show: false } },
      series: names.map((n, k) => ({
        name: t(n) || n, type: "bar", stack: "pyramid", barCategoryGap: "10%",
        data: cats.map((c) => { const v = groups.get(n).get(c); return v === null || v === undefined ? null : (k === 0 ? -v : v); }),
      })),
    });
  }
  return Object.assign(base, {
    legend: groups.size > 1 ? { top: 0 } : undefined,
    xAxis: { type: "category", data: cats },
    yAxis: { type: "value" },
    series: [...groups.entries()].map(([name, values]) => ({
      name, type: p.chart === "bar" ? "bar" : "line", connectNulls: false, showSymbol: cats.length < 40,
      data: cats.map((c) => (values.has(c) ? values.get(c) : null)),
    })),
  });
}

function graphOption(base, data, xi, si, yi) {
  if (si < 0) throw new Error(`the query has no column ${"series"}`);
  const degree = new Map();
  const links = data.rows.map((r) => {
    const source = label(r[xi]), target = label(r[si]), w = r[yi];
    for (const n of [source, target]) degree.set(n, (degree.get(n) || 0) + 1);
    const weighted = w !== null && w !== undefined;
    return {
      source, target, value: weighted ? w : undefined,
      lineStyle: weighted ? { width: 1 + Math.log10(1 + w), color: "#c0392b", opacity: 0.7 } : { width: 1, color: "#999", type: "dashed" },
    };
  });
  const first = data.rows.length ? label(data.rows[0][xi]) : "";
  const nodes = [...degree.keys()].map((name) => ({
    name, symbolSize: name === first ? 28 : 10 + Math.min(10, degree.get(name)),
    itemStyle: name === first ? { color: "#1f4e79" } : undefined,
    label: { show: true, fontSize: 11 },
  }));
  return Object.assign(base, {
    tooltip: { trigger: "item", formatter: (x) => (x.dataType === "edge" ? `${x.data.source} → ${x.data.target}` + (x.data.value === undefined ? "" : `: ${formatNumber(x.data.value)}`) : x.name) },
    series: [{ type: "graph", layout: "force", roam: true, draggable: true, edgeSymbol: ["none", "arrow"], edgeSymbolSize: 6,
      force: { repulsion: 160, edgeLength: [60, 160] }, data: nodes, links }],
  });
}

function mapOption(base, data, xi, yi) {
  const values = new Map(data.rows.map((r) => [Number(r[xi]), r[yi]]));
  const tiles = state.prefectures || [];
  const nums = [...values.values()].filter((v) => typeof v === "number");
  const name = (tile) => (state.lang === "ja" ? tile.ja : tile.en);
  return Object.assign(base, {
    tooltip: { formatter: (p) => `${p.data.name}: ${p.data.value[2] === null ? t("withheld") : formatNumber(p.data.value[2])}` },
    grid: { left: 10, right: 10, top: 10, bottom: 50 },
    xAxis: { type: "category", data: [...Array(13).keys()], show: false },
    yAxis: { type: "category", data: [...Array(12).keys()], inverse: true, show: false },
    visualMap: { min: nums.length ? Math.min(...nums) : 0, max: nums.length ? Math.max(...nums) : 1, calculable: true, orient: "horizontal", left: "center", bottom: 0, inRange: { color: ["#e8f0fe", "#2458c6"] } },
    series: [{
      type: "heatmap",
      label: { show: true, fontSize: 9, formatter: (p) => p.data.short },
      itemStyle: { borderColor: "#fff", borderWidth: 2 },
      data: tiles.map((tile) => ({ name: name(tile), short: name(tile).replace(/(都|府|県)$/, "").slice(0, 4), value: [tile.x, tile.y, values.has(tile.code) ? values.get(tile.code) : null] })),
    }],
  });
}

window.addEventListener("resize", () => { for (const c of state.charts) if (c) c.resize(); });

// ---------- live ----------

function openEvents() {
  closeEvents();
  const es = new EventSource("/api/events");
  state.events = es;
  es.addEventListener("snapshot", (ev) => {
    const s = JSON.parse(ev.data);
    const before = state.snapshot;
    state.snapshot = s;
    document.body.dataset.snapshotCohorts = String(s.cohorts);
    document.body.dataset.snapshotStore = String(s.store);
    if (!before || !state.board) return;
    const storeChanged = s.store !== before.store, cohortsChanged = s.cohorts !== before.cohorts;
    if (!storeChanged && !cohortsChanged) return;
    state.board.panels.forEach((p, i) => { if (storeChanged || p.reads_cohorts) loadPanel(i); });
    $("status").textContent = `${t("updated")} ${new Date().toLocaleTimeString(state.lang === "ja" ? "ja-JP" : "en-US")}`;
  });
  es.onerror = () => {
    if (!state.me) return;
    $("status").textContent = t("offline");
    if (es.readyState === EventSource.CLOSED) {
      // Refused (the session ended, or the server restarted): log in again, or retry.
      setTimeout(() => {
        if (state.events !== es) return;
        api("/api/me").then(() => openEvents()).catch((e) => { if (e.status === 401) showLogin(); else openEvents(); });
      }, 3000);
    }
  };
}

function closeEvents() {
  if (state.events) { state.events.close(); state.events = null; }
}

// ---------- start ----------

applyLanguage();
api("/api/me").then((me) => { state.me = me; return start(); }).catch(() => showLogin());
