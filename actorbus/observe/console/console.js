// actorbus console: plain JavaScript and SVG, no build step, no dependencies.
// Every value that comes from the server is inserted as text (never as HTML): dead letters
// and log lines carry data from outside.
"use strict";

const API = "/ui/api";
const SVG = "http://www.w3.org/2000/svg";
const MAX_LOG_LINES = 500;

const ui = {
  graph: null, // {nodes: Map(id -> {el, node, stats}), edges: [{el, label, edge}]}
  state: null,
  logs: [],
  lastSeq: 0,
  dlqQueue: null,
  actionsEnabled: false,
};

// ------------------------------------------------------------------ helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function rate(v) {
  if (v === null || v === undefined) return "–";
  return v >= 10 ? v.toFixed(0) : v.toFixed(1);
}

function num(v) {
  return v === null || v === undefined ? "–" : String(v);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const t = Math.floor(seconds);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${t % 60}s`;
  return `${Math.floor(t / 3600)}h ${Math.floor((t % 3600) / 60)}m`;
}

async function getJSON(path) {
  const r = await fetch(API + path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(`${body.error}: ${JSON.stringify(body.detail)}`);
  return body;
}

async function post(path, data) {
  const token = document.getElementById("token").value.trim();
  sessionStorage.setItem("actorbus-token", token);
  const r = await fetch(API + path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(data || {}),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(`${body.error}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`);
  return body;
}

// ------------------------------------------------------------------ graph

const COLS = { publisher: 24, exchange: 330, queue: 740, consumer: 1110 };
const NODE_W = 200, NODE_H = 46, GAP = 16, SLOT = 15, STEP_H = 16;

function layout(graph) {
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  const services = graph.nodes.filter((n) => n.kind === "service");
  const exchanges = graph.nodes.filter((n) => n.kind === "exchange");
  // queues in the order of the services that consume them, so consumer arrows are level
  const consumerOf = new Map();
  for (const e of graph.edges) {
    const src = byId.get(e.source), dst = byId.get(e.target);
    if (src && dst && src.kind === "queue" && dst.kind === "service") consumerOf.set(src.id, dst.id);
  }
  const order = new Map(services.map((n, i) => [n.id, i]));
  const queues = graph.nodes
    .filter((n) => n.kind === "queue")
    .sort((a, b) => (order.get(consumerOf.get(a.id)) ?? 99) - (order.get(consumerOf.get(b.id)) ?? 99));
  const consumers = queues.filter((q) => consumerOf.has(q.id)).map((q) => byId.get(consumerOf.get(q.id)));
  // a box is tall enough for one arrow slot per incoming and per outgoing edge
  const degree = new Map();
  for (const e of graph.edges) {
    if (!e.label) continue;
    degree.set(`in:${e.target}`, (degree.get(`in:${e.target}`) || 0) + 1);
    degree.set(`out:${e.source}`, (degree.get(`out:${e.source}`) || 0) + 1);
  }
  const heightOf = (n, col) => {
    const k = col === "consumer" ? 1 : Math.max(degree.get(`in:${n.id}`) || 0, degree.get(`out:${n.id}`) || 0);
    return Math.max(NODE_H, k * SLOT + 12);
  };
  const stack = (list, col) => {
    let y = 20;
    return list.map((n) => {
      const hgt = heightOf(n, col);
      const box = { key: col === "consumer" ? `c:${n.id}` : n.id, node: n, col, x: COLS[col], y, h: hgt };
      y += hgt + GAP;
      return box;
    });
  };
  const columns = [stack(services, "publisher"), stack(exchanges, "exchange"), stack(queues, "queue"), stack(consumers, "consumer")];
  let height = Math.max(...columns.map((c) => (c.length ? c[c.length - 1].y + c[c.length - 1].h : 0))) + 20;
  for (const c of columns) { // centre the shorter columns
    if (!c.length) continue;
    const used = c[c.length - 1].y + c[c.length - 1].h + 20;
    for (const b of c) b.y += (height - used) / 2;
  }
  const width = COLS.consumer + NODE_W + 20;
  // sagas: one wide box each below the columns, a line per step; the service points at it
  const sagas = graph.nodes.filter((n) => n.kind === "saga").map((n) => {
    const box = { key: n.id, node: n, col: "saga", x: COLS.publisher, y: height, h: 30 + STEP_H * (n.steps || []).length, w: width - COLS.publisher - 20 };
    height += box.h + GAP;
    return box;
  });
  if (sagas.length) height += 4;
  return { boxes: [...columns.flat(), ...sagas], height, width };
}

function renderGraph(graph) {
  const root = document.getElementById("graph");
  root.textContent = "";
  if (!graph) {
    root.append(h("p", { class: "muted" }, "No system model: the App was started without one (App(system_model=ConsoleModel(services))); the live tables below still work."));
    return;
  }
  const { boxes, height, width } = layout(graph);
  const at = new Map(boxes.map((b) => [b.key, b]));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "system graph" });
  const defs = s("defs");
  const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#97a3b0" }));
  defs.append(marker);
  svg.append(defs);
  const edgeLayer = s("g"), labelLayer = s("g"), nodeLayer = s("g");
  svg.append(edgeLayer, nodeLayer, labelLayer);
  const resolved = [];
  for (const e of graph.edges) {
    const srcKind = e.source.split("_")[0];
    const dstKind = e.target.split("_")[0];
    const a = at.get(e.source);
    // a queue feeds the service drawn in the consumer column
    const b = srcKind === "q" && dstKind === "svc" ? at.get(`c:${e.target}`) : at.get(e.target);
    if (a && b) resolved.push({ e, a, b, srcKind, dstKind });
  }
  // spread the arrows leaving / entering one box over its height, ordered by the other end
  const slots = new Map();
  const claim = (key, other) => { const l = slots.get(key) || []; l.push(other); slots.set(key, l); };
  for (const r of resolved) {
    if (r.dstKind === "saga") continue; // drawn down the left margin, not through a slot
    claim(`out:${r.a.key}`, r); claim(`in:${r.b.key}`, r);
  }
  for (const [key, list] of slots) {
    const side = key.startsWith("out:") ? "b" : "a";
    list.sort((p, q) => p[side].y - q[side].y || p.e.label.localeCompare(q.e.label));
    list.forEach((r, i) => {
      const box = key.startsWith("out:") ? r.a : r.b;
      const y = box.y + (box.h * (i + 1)) / (list.length + 1);
      if (key.startsWith("out:")) r.y1 = y; else r.y2 = y;
    });
  }
  const edges = [];
  for (const r of resolved) {
    const x1 = r.a.x + NODE_W, x2 = r.b.x, y1 = r.y1, y2 = r.y2;
    const mid = (x1 + x2) / 2;
    const d = r.dstKind === "saga" // from the service's left side, down the margin, into the saga's title
      ? `M ${r.a.x} ${r.a.y + r.a.h / 2} H ${r.a.x - 14} V ${r.b.y + 15} H ${r.b.x - 2}`
      : `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2 - 2} ${y2}`;
    const path = s("path", { d, class: `edge${r.e.dashed ? " dashed" : ""}${r.dstKind === "saga" ? " saga" : ""}`, "marker-end": "url(#arrow)" });
    edgeLayer.append(path);
    let label = null;
    if (r.e.label) { // just before the arrow head: one slot per arrow, so labels never pile up
      label = s("text", { x: x2 - 10, y: y2 - 3, class: "elabel", "text-anchor": "end" }, r.e.label);
      labelLayer.append(label);
    }
    edges.push({ edge: r.e, el: path, label, srcKind: r.srcKind, dstKind: r.dstKind });
  }
  const nodes = new Map();
  for (const b of boxes) {
    if (b.node.kind === "saga") {
      const g = s("g", { class: "node saga", transform: `translate(${b.x},${b.y})`, "data-name": b.node.name, "data-service": b.node.service, "data-col": b.col });
      g.append(s("rect", { width: b.w, height: b.h, rx: 6 }));
      g.append(s("text", { x: 10, y: 19, class: "name" }, b.node.label));
      (b.node.steps || []).forEach((step, i) => {
        g.append(s("text", { x: 18, y: 19 + STEP_H * (i + 1), class: "step", "data-step": step.step }, step.label));
      });
      nodeLayer.append(g);
      continue;
    }
    const g = s("g", { class: `node ${b.node.kind}`, transform: `translate(${b.x},${b.y})`, "data-name": b.node.name, "data-col": b.col });
    g.append(s("rect", { width: NODE_W, height: b.h, rx: b.node.kind === "service" ? 18 : b.node.kind === "queue" ? 4 : 10 }));
    const top = b.h / 2 - 5;
    g.append(s("text", { x: 10, y: top, class: "name" }, b.node.label));
    const stat = s("text", { x: 10, y: top + 16, class: "stat" }, "");
    const dead = s("text", { x: NODE_W - 8, y: top, class: "dead", "text-anchor": "end" }, "");
    g.append(stat, dead);
    nodeLayer.append(g);
    nodes.set(b.key, { el: g, node: b.node, stat, dead, col: b.col });
  }
  root.append(svg);
  ui.graph = { nodes, edges };
}

function updateGraph(state) {
  if (!ui.graph) return;
  const byQueue = new Map(state.queues.map((q) => [q.queue, q]));
  const byService = new Map(state.queues.map((q) => [q.service, q]));
  for (const [key, n] of ui.graph.nodes) {
    if (n.node.kind === "queue") {
      const q = byQueue.get(n.node.name);
      if (!q) continue;
      n.stat.textContent = `depth ${num(q.depth)} · ${rate(q.rates.consumed)}/s · ${q.consumers} consumer${q.consumers === 1 ? "" : "s"}`;
      n.dead.textContent = q.deadLetters ? `☠ ${q.deadLetters}` : "";
      n.el.classList.toggle("backlog", (q.depth || 0) > 0);
      n.el.setAttribute("data-depth", String(q.depth));
    } else if (n.node.kind === "service" && n.col === "consumer") {
      const q = byService.get(n.node.name);
      if (q) n.stat.textContent = `acked ${rate(q.rates.acked)}/s · in flight ${num(q.inFlight)}`;
    } else if (n.node.kind === "service") {
      const pub = state.publishRates[n.node.name] || {};
      const total = Object.values(pub).reduce((a, b) => a + b, 0);
      n.stat.textContent = `publishes ${rate(total)}/s`;
    }
  }
  for (const e of ui.graph.edges) {
    let r = 0;
    if (e.srcKind === "ex" && e.dstKind === "q") {
      const q = state.queues.find((x) => `q_${x.queue.replace(/[^A-Za-z0-9_]/g, "_")}` === e.edge.target);
      r = q ? q.typeRates[e.edge.label] || 0 : 0;
    } else if (e.srcKind === "svc" && e.edge.label) {
      const svc = ui.graph.nodes.get(e.edge.source);
      r = svc ? (state.publishRates[svc.node.name] || {})[e.edge.label] || 0 : 0;
    }
    const hot = r > 0;
    e.el.classList.toggle("hot", hot);
    if (e.label) {
      e.label.textContent = hot ? `${e.edge.label} · ${rate(r)}/s` : e.edge.label;
      e.label.classList.toggle("hot", hot);
    }
  }
}

// ------------------------------------------------------------------ tables

function updateHeader(state) {
  const ready = document.getElementById("ready");
  ready.textContent = state.ready ? "ready" : "not ready";
  ready.className = `badge ${state.ready ? "ok" : "bad"}`;
  document.getElementById("broker").textContent = `broker ${state.broker.url}${state.broker.ready ? "" : " (not connected)"}`;
  document.getElementById("uptime").textContent = `console up ${duration(state.uptime)}`;
}

function updateQueues(state) {
  const body = document.querySelector("#queues tbody");
  body.textContent = "";
  for (const q of state.queues) {
    body.append(
      h("tr", { "data-queue": q.queue },
        h("td", {}, q.queue, q.error ? h("div", { class: "error" }, q.error) : null),
        h("td", {}, q.service),
        h("td", {}, h("span", { class: `badge ${q.ready ? "ok" : "bad"}` }, q.ready ? "ready" : "not ready")),
        h("td", { class: "num depth" }, num(q.depth)),
        h("td", { class: "num" }, num(q.inFlight)),
        h("td", { class: "num" }, num(q.consumers)),
        h("td", { class: "num" }, rate(q.rates.consumed)),
        h("td", { class: "num" }, rate(q.rates.acked)),
        h("td", { class: "num" }, rate(q.rates.retried)),
        h("td", { class: "num" }, rate(q.rates.deadLettered)),
        h("td", { class: "num" }, q.deadLetters ? h("a", { href: "#dlq-section", onclick: () => openDlq(q.queue) }, String(q.deadLetters)) : num(q.deadLetters)),
      ),
    );
  }
  if (!state.metrics) body.append(h("tr", {}, h("td", { colspan: 11, class: "muted" }, "metrics are off (install actorbus[metrics]): no rates")));
}

function childRows(children, depth) {
  return children.flatMap((c) => [
    h("tr", {},
      h("td", {}, "\u00a0\u00a0".repeat(depth) + c.name),
      h("td", {}, c.kind),
      h("td", { class: `state-${c.state}` }, c.state),
      h("td", { class: "num" }, String(c.restarts)),
      h("td", {}, duration(c.upFor)),
      h("td", { class: "error" }, c.lastError || ""),
    ),
    ...childRows(c.children || [], depth + 1),
  ]);
}

function updateActors(state) {
  const root = document.getElementById("actors");
  root.textContent = "";
  if (!state.supervisors.length) root.append(h("p", { class: "muted" }, "no supervisors running"));
  for (const sup of state.supervisors) {
    root.append(
      h("div", { class: "tree" },
        h("h3", {}, `${sup.service} `, h("small", {}, `supervisor ${sup.supervisor}`)),
        h("table", {},
          h("thead", {}, h("tr", {}, ["actor", "kind", "state", "restarts", "up for", "last error"].map((t) => h("th", {}, t)))),
          h("tbody", {}, childRows(sup.children, 0)),
        ),
      ),
    );
  }
}

// ------------------------------------------------------------------ dead letters

function updateDlqChips(state) {
  const root = document.getElementById("dlq-queues");
  root.textContent = "";
  for (const q of state.queues) {
    root.append(
      h("button", {
        type: "button",
        class: `${q.deadLetters ? "has" : ""} ${ui.dlqQueue === q.queue ? "selected" : ""}`,
        "data-queue": q.queue,
        onclick: () => openDlq(q.queue),
      }, `${q.dlq} (${num(q.deadLetters)})`),
    );
  }
  ui.actionsEnabled = state.actions.enabled;
  document.getElementById("actions-note").textContent = state.actions.enabled ? "replay and purge need the token" : state.actions.detail;
  for (const b of document.querySelectorAll("button.action")) b.disabled = !state.actions.enabled;
}

async function openDlq(queue) {
  ui.dlqQueue = queue;
  document.getElementById("dlq-panel").hidden = false;
  document.getElementById("dlq-title").textContent = `${queue}.dlq`;
  document.getElementById("dlq-detail").hidden = true;
  await loadDlq();
}

async function loadDlq() {
  const body = document.querySelector("#dlq tbody");
  try {
    const data = await getJSON(`/dead-letters/${encodeURIComponent(ui.dlqQueue)}?limit=50`);
    document.getElementById("dlq-title").textContent = `${data.dlq}: ${data.count} dead letter(s)`;
    body.textContent = "";
    for (const d of data.deadLetters) {
      body.append(
        h("tr", { "data-message-id": d.messageId },
          h("td", {}, h("code", {}, d.messageId)),
          h("td", {}, d.type),
          h("td", {}, num(d.reason)),
          h("td", { class: "error" }, [d.errorType, d.error].filter(Boolean).join(": ")),
          h("td", { class: "num" }, num(d.attempts)),
          h("td", {}, d.correlationId ? h("a", { href: "#logs-section", onclick: () => setCorrelation(d.correlationId) }, d.correlationId) : "–"),
          h("td", {},
            h("button", { type: "button", onclick: () => showDeadLetter(d.messageId) }, "show"), " ",
            h("button", { type: "button", class: "action replay-one", disabled: !ui.actionsEnabled, onclick: () => replay(d.messageId) }, "replay"),
          ),
        ),
      );
    }
    if (!data.deadLetters.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no dead letters")));
  } catch (err) {
    body.textContent = "";
    body.append(h("tr", {}, h("td", { colspan: 7, class: "error" }, String(err.message))));
  }
}

async function showDeadLetter(messageId) {
  const pre = document.getElementById("dlq-detail");
  try {
    const d = await getJSON(`/dead-letters/${encodeURIComponent(ui.dlqQueue)}/${encodeURIComponent(messageId)}`);
    pre.textContent = JSON.stringify(d, null, 2);
  } catch (err) {
    pre.textContent = String(err.message);
  }
  pre.hidden = false;
}

async function action(path, data, what) {
  const out = document.getElementById("dlq-result");
  try {
    const r = await post(path, data);
    out.textContent = r.replayed ? `${what}: replayed ${r.replayed.length}` : `${what}: purged ${r.purged}`;
    out.className = "";
  } catch (err) {
    out.textContent = `${what} failed: ${err.message}`;
    out.className = "error";
  }
  await loadDlq();
}

function replay(messageId) {
  return action(`/dead-letters/${encodeURIComponent(ui.dlqQueue)}/replay`, { messageId }, `replay ${messageId}`);
}

// ------------------------------------------------------------------ logs

function addLogs(lines) {
  for (const line of lines) {
    if (line.seq <= ui.lastSeq) continue;
    ui.logs.push(line);
    ui.lastSeq = line.seq;
  }
  if (ui.logs.length > MAX_LOG_LINES) ui.logs.splice(0, ui.logs.length - MAX_LOG_LINES);
  if (lines.length) renderLogs();
}

function renderLogs() {
  const filter = document.getElementById("correlation").value.trim();
  const root = document.getElementById("logs");
  const stick = root.scrollTop + root.clientHeight >= root.scrollHeight - 4;
  root.textContent = "";
  const shown = ui.logs.filter((l) => !filter || l.correlationId === filter);
  for (const l of shown.slice(-300)) {
    const time = new Date(l.time * 1000).toISOString().slice(11, 23);
    const fields = Object.entries(l.fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    root.append(
      h("div", { class: `lvl-${l.level}` },
        `${time} ${l.level.padEnd(7)} `,
        l.correlationId ? h("a", { onclick: () => setCorrelation(l.correlationId), title: "follow this flow" }, `[${l.correlationId}] `) : "",
        h("strong", {}, l.event), " ", fields),
    );
  }
  document.getElementById("logs-note").textContent = `${shown.length} line(s)${filter ? ` of flow ${filter}` : ""}; the server keeps the last lines in memory`;
  if (stick) root.scrollTop = root.scrollHeight;
}

async function setCorrelation(id) {
  document.getElementById("correlation").value = id;
  // the page only holds what it saw: fetch the flow's older lines from the server's buffer
  try {
    const data = await getJSON(`/logs?correlationId=${encodeURIComponent(id)}&limit=500`);
    const known = new Set(ui.logs.map((l) => l.seq));
    ui.logs = ui.logs.concat(data.lines.filter((l) => !known.has(l.seq))).sort((a, b) => a.seq - b.seq);
  } catch (err) { /* the live stream still fills in */ }
  renderLogs();
}

// ------------------------------------------------------------------ AsyncAPI and schema

function schemaTable(schema, doc) {
  const resolve = (sch) => {
    if (sch && sch.$ref) {
      const parts = sch.$ref.replace(/^#\//, "").split("/");
      let cur = doc;
      for (const p of parts) cur = cur ? cur[p] : undefined;
      return cur || sch;
    }
    return sch;
  };
  const root = resolve(schema) || {};
  const props = root.properties || {};
  const required = new Set(root.required || []);
  const describe = (p) => {
    const r = resolve(p) || {};
    if (r.type === "array") {
      const item = resolve(r.items) || {};
      return `array of ${item.title || item.type || "object"}`;
    }
    return r.title || r.type || (r.anyOf ? r.anyOf.map((x) => (resolve(x) || {}).type).join(" | ") : "any");
  };
  return h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "type"), h("th", {}, "required"))),
    h("tbody", {}, Object.entries(props).map(([k, v]) => h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, describe(v)), h("td", {}, required.has(k) ? "yes" : "")))),
  );
}

function renderAsyncApi(doc) {
  const root = document.getElementById("asyncapi");
  root.textContent = "";
  root.classList.add("api");
  const info = doc.info || {};
  root.append(h("p", {}, h("strong", {}, info.title || "API"), ` ${info.version || ""} · AsyncAPI ${doc.asyncapi}`));
  if (info.description) root.append(h("p", { class: "muted" }, info.description));
  const channels = doc.channels || {};
  const ops = Object.entries(doc.operations || {});
  root.append(h("h3", {}, `Operations (${ops.length})`));
  root.append(h("table", {},
    h("thead", {}, h("tr", {}, ["operation", "action", "channel", "messages"].map((t) => h("th", {}, t)))),
    h("tbody", {}, ops.map(([id, op]) => {
      const chRef = ((op.channel || {}).$ref || "").split("/").pop();
      const ch = channels[chRef] || {};
      const msgs = (op.messages || []).map((m) => (m.$ref || "").split("/").pop()).join(", ");
      return h("tr", {}, h("td", {}, h("code", {}, id)), h("td", {}, op.action), h("td", {}, ch.address || chRef), h("td", {}, msgs));
    })),
  ));
  const messages = Object.entries((doc.components || {}).messages || {});
  root.append(h("h3", {}, `Messages (${messages.length})`));
  for (const [id, m] of messages) {
    root.append(h("details", {},
      h("summary", {}, h("code", {}, id), " ", m.title || m.name || "", m.summary ? ` — ${m.summary}` : ""),
      schemaTable(m.payload, doc),
    ));
  }
}

function renderSchema(data) {
  const root = document.getElementById("schema");
  root.textContent = "";
  const cls = { ok: "ok", compatible: "warn", breaking: "bad", error: "bad", none: "" }[data.status] || "";
  root.append(h("p", {}, h("span", { class: `badge ${cls}`, id: "schema-status" }, data.status), " ", data.detail));
  root.append(h("p", { class: "muted" }, data.snapshot ? `snapshot: ${data.snapshot}${data.configured ? "" : " (found beside the services' package)"}` : "no snapshot file", ` · ${data.messages ?? "?"} message types in the running code`));
  if (data.changes && data.changes.length) {
    root.append(h("table", {},
      h("thead", {}, h("tr", {}, ["", "message", "version", "field", "change"].map((t) => h("th", {}, t)))),
      h("tbody", {}, data.changes.map((c) => h("tr", {}, h("td", { class: c.breaking ? "error" : "" }, c.breaking ? "breaking" : "additive"), h("td", {}, c.message), h("td", {}, String(c.version)), h("td", {}, c.field), h("td", {}, c.detail)))),
    ));
  }
}

// ------------------------------------------------------------------ live stream

function onState(state) {
  ui.state = state;
  updateHeader(state);
  updateGraph(state);
  updateQueues(state);
  updateActors(state);
  updateDlqChips(state);
  if (state.logs) addLogs(state.logs);
  document.body.setAttribute("data-updated", String(state.time));
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource(`${API}/events?after=${ui.lastSeq}`);
  source.addEventListener("state", (ev) => {
    live.textContent = "● live";
    onState(JSON.parse(ev.data));
  });
  source.onerror = () => { live.textContent = "○ reconnecting"; };
}

async function start() {
  document.getElementById("token").value = sessionStorage.getItem("actorbus-token") || "";
  document.getElementById("correlation").addEventListener("input", renderLogs);
  document.getElementById("correlation-clear").addEventListener("click", () => { document.getElementById("correlation").value = ""; renderLogs(); });
  document.getElementById("dlq-refresh").addEventListener("click", loadDlq);
  document.getElementById("dlq-replay-all").addEventListener("click", () => action(`/dead-letters/${encodeURIComponent(ui.dlqQueue)}/replay`, {}, "replay all"));
  document.getElementById("dlq-purge").addEventListener("click", () => {
    if (confirm(`Delete every dead letter of ${ui.dlqQueue}.dlq?`)) action(`/dead-letters/${encodeURIComponent(ui.dlqQueue)}/purge`, {}, "purge");
  });
  try {
    renderGraph((await getJSON("/model")).graph);
  } catch (err) {
    document.getElementById("graph").textContent = String(err.message);
  }
  connect();
  getJSON("/schema").then(renderSchema).catch((err) => { document.getElementById("schema").textContent = String(err.message); });
  fetch(`${API}/asyncapi.json`).then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`)))).then(renderAsyncApi)
    .catch((err) => { document.getElementById("asyncapi").textContent = `no AsyncAPI document: ${err.message}`; });
}

document.addEventListener("DOMContentLoaded", start);
