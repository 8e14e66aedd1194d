// fleet's status page. Long-polls /api/overview: the server answers at once when something changed since
// the version the page has, else after a second (so rates and ages stay fresh). No page reload, no library.
"use strict";

const STATES = ["healthy", "starting", "reloading", "ejected", "draining", "removing", "failed"];
const WINDOW = 600; // at most this many seconds of history in the timeline
const TICKS = [10, 30, 60, 120, 300]; // seconds between grid lines: the first that gives at most 6
const SPARK = 60; // samples kept per sparkline
const MIN_GAP = 250; // ms between two polls, however fast things change

const page = {
  version: 0,
  lastOk: 0,
  rps: new Map(), // backend -> recent req/s samples
  total: [],
  answers: null, // the previous answers by class and when, for rates
  seenSeq: 0,
  skew: 0, // server clock - browser clock
  doc: null,
};

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function mib(bytes) {
  return bytes >= 10 * 2 ** 30 ? (bytes / 2 ** 30).toFixed(1) + " GiB" : (bytes / 2 ** 20).toFixed(1) + " MiB";
}

function age(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  if (seconds < 60) return seconds + "s";
  if (seconds < 3600) return Math.floor(seconds / 60) + "m " + String(seconds % 60).padStart(2, "0") + "s";
  if (seconds < 86400) return Math.floor(seconds / 3600) + "h " + String(Math.floor(seconds / 60) % 60).padStart(2, "0") + "m";
  return Math.floor(seconds / 86400) + "d " + (Math.floor(seconds / 3600) % 24) + "h";
}

function clock(at) {
  const d = new Date(at * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function rate(value) {
  return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(1);
}

function badge(state) {
  const name = state || "";
  return el("span", { class: "badge st-" + name.replace(/ /g, "-"), text: name });
}

function push(list, value) {
  list.push(value);
  if (list.length > SPARK) list.shift();
}

function spark(node, values) {
  node.replaceChildren();
  if (values.length < 2) return;
  const top = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / (SPARK - 1)) * 120},${24 - (v / top) * 22 - 1}`);
  node.append(svg("polyline", { points: points.join(" ") }));
}

// ---- the header, the banner and the tiles -----------------------------------------------------------

function renderHeader(doc) {
  $("root").textContent = doc.root;
  const parts = Object.entries(doc.parts).map(([name, up]) =>
    el("span", { class: "pill" + (up ? "" : " down"), text: name + (up ? "" : " down"), "data-part": name })
  );
  $("parts").replaceChildren(...parts);
  const problems = Object.entries(doc.parts).filter(([, up]) => !up).map(([name]) => `${name} is not running`);
  if (doc.routing_error) problems.push("nginx refused the last routing change: " + doc.routing_error);
  $("banner").hidden = problems.length === 0;
  $("banner").textContent = problems.join(" · ");
}

function renderTiles(doc) {
  const backends = doc.backends;
  const counts = {};
  for (const b of backends) counts[b.state] = (counts[b.state] || 0) + 1;
  const healthy = counts.healthy || 0;
  $("t-backends").textContent = `${healthy}/${backends.length}`;
  $("t-states").replaceChildren(
    ...STATES.filter((s) => counts[s]).map((s) => {
      const span = el("span", { class: "st-" + s, title: `${counts[s]} ${s}` });
      span.style.width = (100 * counts[s]) / backends.length + "%";
      return span;
    })
  );
  const total = backends.reduce((sum, b) => sum + b.rps, 0);
  $("t-rps").textContent = rate(total);
  push(page.total, total);
  spark($("t-rps-spark"), page.total);
  const busy = backends.reduce((sum, b) => sum + b.busy, 0);
  const workers = backends.reduce((sum, b) => sum + b.busy + b.idle, 0);
  $("t-workers").textContent = `${busy}/${workers}`;
  $("t-workers-sub").textContent = workers ? `${Math.round((100 * busy) / workers)}% busy` : "";
  const memory = backends.reduce((sum, b) => sum + b.memory, 0);
  $("t-memory").textContent = mib(memory);
  $("t-memory-sub").textContent = backends.length ? `${mib(memory / backends.length)} per backend` : "";
  const c = doc.nginx.connections;
  $("t-conns").textContent = c ? c.active : "–";
  $("t-conns-sub").textContent = c ? `reading ${c.reading} · writing ${c.writing} · idle ${c.waiting}` : "nginx not answering";
  renderAnswers(doc);
  const routed = doc.routed.length;
  $("routed-count").textContent = `${routed} routed of ${backends.length}`;
  document.title = `fleet · ${healthy}/${backends.length} healthy` + (counts.failed ? ` · ${counts.failed} failed` : "");
}

function renderAnswers(doc) {
  const now = doc.now;
  const answers = doc.nginx.answers;
  const prev = page.answers;
  page.answers = { at: now, answers };
  if (!prev || now - prev.at < 0.2) return;
  const per = {};
  for (const [cls, count] of Object.entries(answers)) per[cls] = Math.max(0, count - (prev.answers[cls] || 0)) / (now - prev.at);
  const all = Object.values(per).reduce((a, b) => a + b, 0);
  $("t-answers").textContent = rate(all);
  $("t-answers-sub").textContent = `2xx ${rate(per["2xx"] || 0)} · 4xx ${rate(per["4xx"] || 0)} · 5xx ${rate(per["5xx"] || 0)}`;
  $("t-answers-sub").classList.toggle("bad", (per["5xx"] || 0) > 0);
}

// ---- the backends table -----------------------------------------------------------------------------

function workersCell(b) {
  const boxes = [];
  for (let i = 0; i < b.busy + b.idle; i++) boxes.push(el("span", { class: i < b.busy ? "busy" : "" }));
  return [el("div", { class: "workers" }, ...boxes), el("span", { class: "workers-text", text: `${b.busy} busy · ${b.idle} idle` })];
}

function renderBackends(doc) {
  const body = document.querySelector("#backends tbody");
  const rows = new Map([...body.children].map((tr) => [tr.dataset.backend, tr]));
  const names = new Set();
  // The app column only where there is more than one app (as `fleet status`).
  const apps = new Set(doc.backends.map((b) => b.app));
  document.querySelector("#backends").classList.toggle("one-app", apps.size <= 1);
  for (const b of doc.backends) {
    names.add(b.name);
    let tr = rows.get(b.name);
    if (!tr) {
      tr = el("tr", { "data-backend": b.name });
      body.append(tr);
    }
    const history = page.rps.get(b.name) || [];
    page.rps.set(b.name, history);
    push(history, b.rps);
    if (tr.dataset.state && tr.dataset.state !== b.state) {
      tr.classList.remove("changed");
      void tr.offsetWidth; // restart the flash
      tr.classList.add("changed");
    }
    tr.dataset.state = b.state;
    const sparkNode = svg("svg", { class: "spark", viewBox: "0 0 120 24", preserveAspectRatio: "none" });
    spark(sparkNode, history);
    const since = b.since ? el("span", { class: "age", text: "for " + age(doc.now - b.since) }) : "";
    tr.replaceChildren(
      el("td", { class: "name" }, b.name, el("span", { class: "pid", text: b.pid ? "pid " + b.pid : "" })),
      el("td", { class: "app-col", text: b.app }),
      el("td", { class: "state" }, badge(b.state), since),
      el("td", {}, el("span", { class: "routed " + (b.routed ? "yes" : "no"), text: b.routed ? "●" : "○", title: b.routed ? "routed" : "not routed" })),
      el("td", {}, ...workersCell(b)),
      el("td", { class: "num" }, rate(b.rps), sparkNode),
      el("td", { class: "num", text: b.requests.toLocaleString() }),
      el("td", { class: "num", text: b.memory ? mib(b.memory) : "–" }),
      el("td", { class: "num", text: `${b.reloads} · ${b.respawns} · ${b.exceptions}` }),
      el("td", { class: "err", title: b.error }, el("div", { text: b.error }))
    );
  }
  for (const [name, tr] of rows) {
    if (!names.has(name)) {
      tr.remove();
      page.rps.delete(name);
    }
  }
  [...body.children]
    .sort((a, b) => a.dataset.backend.localeCompare(b.dataset.backend))
    .forEach((tr) => body.append(tr));
  $("empty").hidden = doc.backends.length > 0;
}

// ---- the timeline: one lane per backend, and the list of transitions --------------------------------

function renderLanes(doc) {
  const node = $("lanes");
  const width = node.clientWidth || 900;
  const left = 150;
  const lane = 18;
  const now = doc.now;
  // As much history as there is, from one minute up to WINDOW: a young cluster's timeline is not empty.
  const earliest = doc.events.length ? Math.min(...doc.events.map((e) => e.at)) : now;
  const span = Math.min(WINDOW, Math.max(60, now - earliest + 5));
  const start = now - span;
  const byName = new Map();
  for (const e of doc.events) {
    if (!byName.has(e.name)) byName.set(e.name, []);
    byName.get(e.name).push(e);
  }
  const current = new Map(doc.backends.map((b) => [b.name, b.state]));
  const names = [...new Set([...current.keys(), ...[...byName.keys()].filter((n) => byName.get(n).some((e) => e.at >= start))])].sort();
  const height = names.length * lane + 22;
  node.setAttribute("viewBox", `0 0 ${width} ${height}`);
  node.setAttribute("height", height);
  const x = (t) => left + ((Math.max(t, start) - start) / span) * (width - left - 8);
  const children = [];
  const step = TICKS.find((t) => span / t <= 6) || TICKS[TICKS.length - 1];
  for (let ago = 0; ago <= span; ago += step) {
    const gx = x(now - ago);
    children.push(svg("line", { class: "grid", x1: gx, x2: gx, y1: 0, y2: height - 18 }));
    const label = svg("text", { x: gx, y: height - 4, "text-anchor": ago ? "middle" : "end" });
    label.textContent = !ago ? "now" : ago < 60 ? `-${ago}s` : `-${ago / 60}m`;
    children.push(label);
  }
  names.forEach((name, i) => {
    const y = i * lane + 2;
    const title = svg("text", { class: "name", x: 0, y: y + 12 });
    title.textContent = name.length > 20 ? name.slice(0, 19) + "…" : name;
    children.push(title);
    const events = (byName.get(name) || []).slice().sort((a, b) => a.at - b.at);
    // The state at the window's start: the last move before it, else where the first move came from.
    const before = events.filter((e) => e.at < start).pop();
    let state = before ? before.new : events.length ? events[0].old : current.get(name);
    let from = start;
    const segments = [];
    for (const e of events.filter((e) => e.at >= start)) {
      segments.push([from, e.at, state]);
      state = e.new;
      from = e.at;
    }
    segments.push([from, now, current.has(name) ? current.get(name) : state]);
    for (const [t0, t1, s] of segments) {
      if (!s) continue;
      const rect = svg("rect", { x: x(t0), y, width: Math.max(1.5, x(t1) - x(t0)), height: lane - 5, rx: 2, class: "st-" + s });
      rect.style.fill = `var(--${STATES.includes(s) ? s : "removing"})`;
      const tip = svg("title");
      tip.textContent = `${name}: ${s} from ${clock(Math.max(t0, start))}`;
      rect.append(tip);
      children.push(rect);
    }
  });
  children.push(svg("line", { class: "now", x1: x(now), x2: x(now), y1: 0, y2: height - 18 }));
  node.replaceChildren(...children);
}

function renderEvents(doc) {
  const list = $("events");
  const items = doc.events.slice().reverse().map((e) => {
    const li = el(
      "li",
      { "data-seq": e.seq },
      el("time", { text: clock(e.at) }),
      el("span", { class: "who", text: e.name, title: e.name }),
      el("span", { class: "move" }, badge(e.old || "new"), " → ", badge(e.new || "gone")),
      el("span", { class: "reason", text: e.reason, title: e.reason })
    );
    if (page.seenSeq && e.seq > page.seenSeq) li.classList.add("fresh");
    return li;
  });
  list.replaceChildren(...items);
  if (doc.events.length) page.seenSeq = Math.max(page.seenSeq, doc.events[doc.events.length - 1].seq);
}

function renderLegend() {
  $("legend").replaceChildren(
    ...STATES.map((s) => {
      const swatch = el("i");
      swatch.style.background = `var(--${s})`;
      return el("span", {}, swatch, s);
    })
  );
}

// ---- the loop ---------------------------------------------------------------------------------------

function render(doc) {
  page.doc = doc;
  page.skew = doc.now - Date.now() / 1000;
  renderHeader(doc);
  renderTiles(doc);
  renderBackends(doc);
  renderLanes(doc);
  renderEvents(doc);
}

function setLive() {
  const live = $("live");
  const quiet = (Date.now() - page.lastOk) / 1000;
  if (!page.lastOk) return;
  if (quiet > 3) {
    live.dataset.live = "down";
    $("live-text").textContent = `no answer for ${age(quiet)}, retrying`;
  } else {
    live.dataset.live = "live";
    $("live-text").textContent = "live";
  }
}

async function poll() {
  for (;;) {
    const began = Date.now();
    try {
      const response = await fetch(`/api/overview?version=${page.version}&wait=1`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const doc = await response.json();
      page.version = doc.version;
      page.lastOk = Date.now();
      render(doc);
    } catch (error) {
      page.lastOk = page.lastOk || 1;
      await sleep(1000);
    }
    setLive();
    await sleep(Math.max(0, MIN_GAP - (Date.now() - began)));
  }
}

renderLegend();
setInterval(setLive, 500);
window.addEventListener("resize", () => page.doc && renderLanes(page.doc));
poll();
