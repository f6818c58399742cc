// HEPop's web UI: call search, call flow (ladder), PCAP download, SQL console.
// Plain JavaScript, no build step, no network but this server's API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const tokenInput = $("#token");
tokenInput.value = sessionStorage.getItem("hepop-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("hepop-token", tokenInput.value));

function headers() {
  const t = tokenInput.value.trim();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

function showError(message) {
  const e = $("#error");
  e.textContent = message;
  e.hidden = !message;
}

// The API's answer, or an Error carrying its message.
async function api(path) {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) {
    let message = `${r.status} ${r.statusText}`;
    try { message = (await r.json()).error || message; } catch (_) { /* not JSON */ }
    if (r.status === 401) message += " (set the API token above)";
    throw new Error(message);
  }
  return r;
}

function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  for (const c of children) n.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return n;
}

function svg(tag, attrs = {}, text) {
  const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

// Times come as UTC without a zone.
const utc = (t) => new Date(t.endsWith("Z") ? t : `${t}Z`);
const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);

// Tabs.
for (const [tab, page] of [["#tab-calls", "#calls-page"], ["#tab-sql", "#sql-page"]]) {
  $(tab).addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.remove("active"));
    $(tab).classList.add("active");
    $("#calls-page").hidden = page !== "#calls-page";
    $("#sql-page").hidden = page !== "#sql-page";
  });
}

// Search.
const form = $("#search");
const now = new Date();
form.from.value = localInput(new Date(now.getTime() - 3600000));
form.to.value = localInput(new Date(now.getTime() + 60000));

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("");
  const q = new URLSearchParams();
  const range = { from: new Date(form.from.value).toISOString(), to: new Date(form.to.value).toISOString() };
  q.set("from", range.from);
  q.set("to", range.to);
  for (const k of ["caller", "callee", "call_id", "ip", "status", "limit"]) {
    if (form[k].value.trim()) q.set(k, form[k].value.trim());
  }
  try {
    const calls = await (await api(`/api/v1/calls?${q}`)).json();
    const body = $("#results tbody");
    body.replaceChildren(...calls.map((c) => {
      const legs = [c.aleg_id, ...(c.b_legs || [])].filter(Boolean).length;
      // Call records carry the delays; calls found from messages do not.
      const secs = (ms) => (ms == null ? "" : `${(ms / 1000).toFixed(1)} s`);
      // RTCP packets lost caller → callee and back, the worst jitter on hover.
      const lost = (c) => c.rtcp_reports ? el("td", {
        title: `jitter max ${c.caller_to_callee_jitter_max ?? "-"} / ${c.callee_to_caller_jitter_max ?? "-"} (${c.rtcp_reports} reports)`,
      }, `${c.caller_to_callee_lost ?? "-"} / ${c.callee_to_caller_lost ?? "-"}`) : el("td", {}, "");
      const row = el("tr", { class: "call", "data-call-id": c.call_id },
        el("td", {}, utc(c.start_time).toISOString().replace("T", " ").slice(0, 23)),
        el("td", {}, secs(c.duration_ms)), el("td", {}, secs(c.pdd_ms)), el("td", {}, secs(c.setup_ms)),
        el("td", {}, secs(c.talk_ms)), el("td", {}, c.ended_by ?? ""),
        el("td", {}, c.caller), el("td", {}, c.callee), el("td", {}, c.final_status ?? ""),
        el("td", {}, c.reason ?? ""), lost(c),
        el("td", {}, `${c.src_ip}:${c.src_port}`), el("td", {}, `${c.dst_ip}:${c.dst_port}`),
        el("td", {}, c.messages), el("td", {}, legs ? legs + 1 : 1), el("td", {}, c.call_id));
      // The flow of the call's own time, not the search's (which may span days).
      const own = { from: utc(c.start_time).toISOString(), to: new Date(utc(c.end_time).getTime() + 1000).toISOString() };
      row.addEventListener("click", () => openCall(c.call_id, own));
      return row;
    }));
    $("#results").hidden = false;
    if (!calls.length) showError("No call in this range matches.");
  } catch (e) {
    showError(e.message);
  }
});

// A call.
let current = null;

async function openCall(callId, window) {
  showError("");
  const q = new URLSearchParams(window);
  try {
    const flow = await (await api(`/api/v1/calls/${encodeURIComponent(callId)}?${q}`)).json();
    current = { callId, query: q.toString() };
    $("#call-title").textContent = `Call ${callId}`;
    $("#legs").textContent = `Legs: ${flow.legs.join(", ")}${flow.truncated ? " (first messages only)" : ""}`;
    drawLadder(flow);
    $("#rtcp-summary tbody").replaceChildren(...flow.rtcp_summary.map((d) => el("tr", {},
      el("td", {}, d.src), el("td", {}, d.dst), el("td", {}, d.reports), el("td", {}, d.packets_lost),
      el("td", {}, d.jitter_mean?.toFixed(1) ?? ""), el("td", {}, d.jitter_max ?? ""))));
    $("#logs").replaceChildren(...flow.logs.map((l) => el("li", {}, `${l.time} ${l.payload}`)));
    $("#download-status").textContent = "";
    $("#call").hidden = false;
    $("#call").scrollIntoView();
  } catch (e) {
    showError(e.message);
  }
}

function drawLadder(flow) {
  const ladder = $("#ladder");
  const col = 200, row = 26, top = 50, left = 110;
  const x = (h) => left + flow.hosts.indexOf(h) * col;
  const ep = (m, side) => {
    const ip = m[`${side}_ip`], port = m[`${side}_port`];
    return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
  };
  const legColor = ["#1d3557", "#6a4c93", "#2a9d8f", "#e76f51", "#8d6e63"];
  const start = flow.messages.length ? utc(flow.messages[0].time).getTime() : 0;
  const width = left + Math.max(flow.hosts.length - 1, 1) * col + 120;
  const height = top + flow.messages.length * row + 20;
  ladder.setAttribute("width", width);
  ladder.setAttribute("height", height);
  ladder.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", markerWidth: 8, markerHeight: 8, refX: 8, refY: 4, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "context-stroke" }));
  defs.append(marker);
  const parts = [defs];
  for (const h of flow.hosts) {
    parts.push(svg("text", { x: x(h), y: 20, "text-anchor": "middle", class: "host" }, h));
    parts.push(svg("line", { x1: x(h), y1: 28, x2: x(h), y2: height, stroke: "#aab4c0", "stroke-dasharray": "4 3" }));
  }
  flow.messages.forEach((m, i) => {
    const y = top + i * row, x1 = x(ep(m, "src")), x2 = x(ep(m, "dst"));
    const label = m.method || `${m.status}${m.cseq_method ? " " + m.cseq_method : ""}`;
    const color = m.status >= 300 ? "#c0392b" : m.status >= 200 ? "#2e7d32" : legColor[flow.legs.indexOf(m.call_id) % legColor.length];
    const g = svg("g", { class: "msg", "data-index": i });
    g.append(svg("text", { x: 4, y: y + 4, fill: "#66717d" }, `+${((utc(m.time).getTime() - start) / 1000).toFixed(3)}s`));
    g.append(svg("line", { x1, y1: y, x2: x2 === x1 ? x1 + 40 : x2, y2: y, stroke: color, "stroke-width": 1.5, "marker-end": "url(#arrow)" }));
    g.append(svg("text", { x: (x1 + x2) / 2, y: y - 4, "text-anchor": "middle", fill: color, class: "label" }, label));
    g.addEventListener("click", () => {
      ladder.querySelectorAll("g.msg.selected").forEach((s) => s.classList.remove("selected"));
      g.classList.add("selected");
      $("#raw").textContent = `${m.time}Z ${ep(m, "src")} -> ${ep(m, "dst")} (${m.call_id})\n\n${m.payload}`;
    });
    parts.push(g);
  });
  ladder.replaceChildren(...parts);
}

async function download(kind) {
  if (!current) return;
  try {
    const r = await api(`/api/v1/calls/${encodeURIComponent(current.callId)}/${kind}?${current.query}`);
    const blob = await r.blob();
    const name = `${current.callId.replace(/[^\w.@-]/g, "_")}.${kind === "pcap" ? "pcap" : "txt"}`;
    const a = el("a", { href: URL.createObjectURL(blob), download: name });
    a.click();
    URL.revokeObjectURL(a.href);
    $("#download-status").textContent = `saved ${name} (${blob.size} bytes)`;
  } catch (e) {
    showError(e.message);
  }
}
$("#pcap").addEventListener("click", () => download("pcap"));
$("#text").addEventListener("click", () => download("text"));

// SQL console.
$("#run").addEventListener("click", async () => {
  showError("");
  const started = performance.now();
  try {
    const rows = await (await api(`/query?${new URLSearchParams({ q: $("#sql").value })}`)).json();
    const cols = rows.length ? Object.keys(rows[0]) : [];
    $("#sql-result thead").replaceChildren(el("tr", {}, ...cols.map((c) => el("th", {}, c))));
    $("#sql-result tbody").replaceChildren(...rows.map((r) => el("tr", {}, ...cols.map((c) => {
      const v = r[c];
      return el("td", {}, v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
    }))));
    $("#sql-status").textContent = `${rows.length} rows in ${Math.round(performance.now() - started)} ms`;
  } catch (e) {
    showError(e.message);
  }
});
