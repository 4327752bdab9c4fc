/* GKD Distill dashboard: plain JavaScript over the /v1 REST API (no framework, no build step).
 *
 * Safety rule: server text only ever enters the page through textContent or attribute setters
 * (see el() below); nothing here assigns innerHTML.
 */
"use strict";

(function () {
  const KEY_STORAGE = "gkd.apiKey";
  const STATUSES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"];
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const LOG_TAIL_LINES = 200; // the end of a training log, where a failure is
  const METRIC_PAGES_PER_REFRESH = 20; // 10,000 rows each: a long job's curves load over a few refreshes
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const app = document.getElementById("app");
  let timers = [];
  let routeGen = 0; // bumps on every navigation so late answers of an old page are dropped

  // ----- DOM helpers ------------------------------------------------------------------------

  /** Build an element; attrs set via setAttribute/properties, children appended as text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    applyAttrs(node, attrs);
    appendAll(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    applyAttrs(node, attrs);
    appendAll(node, children);
    return node;
  }

  function applyAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else if (name === "dataset") {
        Object.assign(node.dataset, value);
      } else if (name === "value" || name === "checked" || name === "disabled") {
        node[name] = value;
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }

  function appendAll(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function stopTimers() {
    timers.forEach((t) => clearTimeout(t));
    timers = [];
  }

  function later(fn, ms) {
    timers.push(setTimeout(fn, ms));
  }

  // ----- formatting -------------------------------------------------------------------------

  function age(iso) {
    if (!iso) return "-";
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
    if (seconds >= 86400) return Math.floor(seconds / 86400) + "d";
    if (seconds >= 3600) return Math.floor(seconds / 3600) + "h";
    if (seconds >= 60) return Math.floor(seconds / 60) + "m";
    return seconds + "s";
  }

  function when(iso) {
    if (!iso) return "";
    return String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, " UTC");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return h + "h" + String(m).padStart(2, "0") + "m";
    return m ? m + "m" + String(r).padStart(2, "0") + "s" : r + "s";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB"];
    let v = Number(n), i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function pct(miou) {
    if (miou === null || miou === undefined || Number.isNaN(Number(miou))) return null;
    const v = Number(miou);
    return v <= 1 ? v * 100 : v;
  }

  function badge(status) {
    return el("span", { class: "badge badge-" + String(status).replace(/[^a-z_]/g, "") }, status);
  }

  function progressBar(fraction) {
    const value = Math.max(0, Math.min(1, Number(fraction) || 0));
    const bar = el("span", { class: "bar", role: "progressbar", "aria-valuenow": Math.round(value * 100) });
    const fill = el("span", { class: "bar-fill" });
    fill.style.width = (value * 100).toFixed(1) + "%";
    bar.append(fill);
    return el("span", { class: "progress" }, bar, el("span", { class: "muted" }, Math.round(value * 100) + "%"));
  }

  // ----- API --------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      const title = (problem && problem.title) || "HTTP " + status;
      const detail = problem && typeof problem.detail === "string" ? problem.detail : "";
      super(detail ? title + ": " + detail : title);
      this.status = status;
      this.problem = problem || {};
      const raw = (problem && (problem.errors || (Array.isArray(problem.detail) ? problem.detail : null))) || [];
      this.errors = raw.map((e) => ({
        field: fieldPath(e),
        msg: String((e && (e.msg || e.message)) || e) + (e && e.fix ? " (" + e.fix + ")" : ""),
      }));
    }
  }

  function fieldPath(e) {
    if (!e || typeof e !== "object") return "";
    let loc = e.loc;
    if (!loc && e.field) loc = String(e.field).split(".");
    if (!Array.isArray(loc)) loc = loc ? [loc] : [];
    // "targets[0].dataset" and ["body", "targets", 0, "dataset"] both become "targets.0.dataset".
    return loc.filter((p) => p !== "body").map(String).join(".").replace(/\[(\d+)\]/g, ".$1").replace(/^\./, "");
  }

  function apiKey() {
    return localStorage.getItem(KEY_STORAGE);
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = { Accept: "application/json, application/problem+json" };
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method: opts.method,
        headers: headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      });
    } catch (err) {
      throw new ApiError(0, { title: "Network error", detail: "cannot reach the server" });
    }
    if (response.status === 401) {
      localStorage.removeItem(KEY_STORAGE);
      showKeyPrompt("That API key was not accepted; enter a valid key.");
      throw new ApiError(401, { title: "Unauthorized" });
    }
    const text = await response.text();
    if (opts.text && response.ok) return text; // a plain-text answer (a training log), as it is
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (err) { data = { title: text.slice(0, 200) }; }
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  // Methods, heads and phases come from the server's catalogue (GET /v1/catalog), never a copy here.
  let catalogRequest = null;
  function catalog() {
    if (!catalogRequest) {
      catalogRequest = api("/v1/catalog").catch((err) => {
        catalogRequest = null;
        throw err;
      });
    }
    return catalogRequest;
  }

  function listOf(body, key) {
    if (Array.isArray(body)) return body;
    if (body && Array.isArray(body[key])) return body[key];
    if (body && Array.isArray(body.items)) return body.items;
    return [];
  }

  /** An API error as lines: its title and detail, then each field error ("targets.0.dataset: ..."). */
  function problemLines(err) {
    const fields = (err && err.errors) || [];
    if (!fields.length) return [el("div", {}, err && err.message ? err.message : String(err))];
    const title = (err.problem && err.problem.title) || err.message;
    return [el("div", {}, title), ...fields.map((e) => el("div", { class: "field-error" }, (e.field ? e.field + ": " : "") + e.msg))];
  }

  function errorBox(err) {
    return el("div", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
  }

  // ----- API key ----------------------------------------------------------------------------

  function updateKeyState() {
    const key = apiKey();
    document.getElementById("key-state").textContent = key ? "key …" + key.slice(-4) : "no key";
    document.getElementById("forget-key").hidden = !key;
  }

  function showKeyPrompt(message) {
    stopTimers();
    updateKeyState();
    clear(app);
    const input = el("input", { id: "api-key", type: "password", autocomplete: "off", required: true, size: 48 });
    const form = el(
      "form",
      { id: "key-form", class: "card narrow" },
      el("h2", {}, "Enter your team's API key"),
      el("p", { class: "muted" }, "It is kept in this browser (localStorage) and sent only to this server."),
      message ? el("p", { class: "error" }, message) : null,
      el("label", { for: "api-key" }, "API key"),
      input,
      el("div", { class: "actions" }, el("button", { type: "submit" }, "Save key"))
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      localStorage.setItem(KEY_STORAGE, value);
      updateKeyState();
      route();
    });
    app.append(form);
    input.focus();
  }

  // ----- job list ---------------------------------------------------------------------------

  // selected: the jobs ticked for comparison (id -> name), kept across pages and filters.
  const listState = { status: "", method: "", created_after: "", page_size: "20", tokens: [null], selected: new Map() };

  function compareHash(ids) {
    return "#/compare?jobs=" + ids.map(encodeURIComponent).join(",");
  }

  function compareBar() {
    const button = el("button", { type: "button", id: "compare-selected" });
    const clearSel = el("button", { type: "button", id: "clear-selection", class: "link-dark" }, "Clear");
    function update() {
      const n = listState.selected.size;
      button.textContent = "Compare selected (" + n + ")";
      button.disabled = n < 2;
      clearSel.hidden = n === 0;
    }
    button.addEventListener("click", () => { location.hash = compareHash(Array.from(listState.selected.keys())); });
    clearSel.addEventListener("click", () => {
      listState.selected.clear();
      for (const box of document.querySelectorAll("input.pick")) box.checked = false;
      update();
    });
    update();
    return { node: el("div", { class: "compare-bar" }, button, clearSel, el("span", { class: "muted" }, "Tick jobs to compare their per-domain mIoU.")), update: update };
  }

  function filterSelect(id, label, values) {
    const select = el("select", { id: id }, el("option", { value: "" }, "any"), values.map((v) => el("option", { value: v }, v)));
    select.value = listState[id.replace("filter-", "")];
    return el("label", { class: "filter" }, label, select);
  }

  async function renderList() {
    const cat = await catalog();
    const filters = el(
      "form",
      { id: "filters", class: "filters" },
      filterSelect("filter-status", "Status ", STATUSES),
      filterSelect("filter-method", "Method ", cat.methods.map((m) => m.name)),
      el("label", { class: "filter" }, "Created after ", el("input", { id: "filter-created_after", type: "date", value: listState.created_after })),
      el(
        "label",
        { class: "filter" },
        "Per page ",
        (function () {
          const s = el("select", { id: "filter-page_size" }, ["20", "50", "100"].map((v) => el("option", { value: v }, v)));
          s.value = listState.page_size;
          return s;
        })()
      ),
      el("button", { type: "submit" }, "Apply")
    );
    filters.addEventListener("submit", (ev) => {
      ev.preventDefault();
      for (const name of ["status", "method", "created_after", "page_size"]) {
        listState[name] = document.getElementById("filter-" + name).value;
      }
      listState.tokens = [null];
      renderList();
    });
    const holder = el("div", { id: "job-list" }, el("p", { class: "muted" }, "Loading jobs…"));
    const bar = compareBar();
    clear(app);
    app.append(el("section", {}, el("h2", {}, "Jobs"), filters, bar.node, holder));
    await loadPage(holder, bar.update);
  }

  async function loadPage(holder, onPick) {
    stopTimers();
    const gen = routeGen;
    const params = new URLSearchParams();
    for (const name of ["status", "method"]) if (listState[name]) params.set(name, listState[name]);
    if (listState.created_after) params.set("created_after", new Date(listState.created_after).toISOString());
    params.set("page_size", listState.page_size);
    const token = listState.tokens[listState.tokens.length - 1];
    if (token) params.set("page_token", token);
    let page;
    try {
      page = await api("/v1/jobs?" + params.toString());
    } catch (err) {
      clear(holder);
      holder.append(errorBox(err));
      return;
    }
    if (gen !== routeGen) return;
    const items = listOf(page, "items");
    const pick = (job) => {
      const box = el("input", { type: "checkbox", class: "pick", "data-pick": job.id, "aria-label": "compare " + (job.name || job.id), checked: listState.selected.has(job.id) });
      box.addEventListener("change", () => {
        if (box.checked) listState.selected.set(job.id, job.name || job.id);
        else listState.selected.delete(job.id);
        if (onPick) onPick();
      });
      return box;
    };
    const rows = items.map((job) =>
      el(
        "tr",
        { "data-job-id": job.id },
        el("td", { class: "pick-cell" }, pick(job)),
        el("td", {}, el("a", { href: "#/jobs/" + encodeURIComponent(job.id) }, job.name || job.id)),
        el("td", {}, badge(job.status)),
        el("td", {}, job.phase || "-"),
        el("td", {}, progressBar(job.progress)),
        el("td", {}, (job.spec && job.spec.method) || job.method || "-"),
        el("td", { title: job.created_at || "" }, age(job.created_at)),
        el("td", { class: "mono muted" }, String(job.id).slice(0, 8))
      )
    );
    const table = el(
      "table",
      { class: "jobs" },
      el("thead", {}, el("tr", {}, el("th", { class: "pick-cell", title: "compare" }, "⇄"), ["Name", "Status", "Phase", "Progress", "Method", "Age", "Id"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No jobs match.")))
    );
    const pageNo = listState.tokens.length;
    const prev = el("button", { type: "button", id: "prev-page", disabled: pageNo <= 1 }, "← Newer");
    const next = el("button", { type: "button", id: "next-page", disabled: !page.next_page_token }, "Older →");
    prev.addEventListener("click", () => { listState.tokens.pop(); loadPage(holder, onPick); });
    next.addEventListener("click", () => { listState.tokens.push(page.next_page_token); loadPage(holder, onPick); });
    clear(holder);
    holder.append(table, el("div", { class: "pager" }, prev, el("span", { id: "page-no", class: "muted" }, "page " + pageNo), next));
    if (items.some((j) => !TERMINAL.has(j.status))) later(() => loadPage(holder, onPick), 5000);
  }

  // ----- job page ---------------------------------------------------------------------------

  function phaseTimeline(job, events, phaseNames) {
    const PHASES = ["queued", ...phaseNames, "done"];
    let current = job.status === "queued" ? "queued" : job.phase;
    if (job.status === "succeeded") current = "done";
    const index = PHASES.indexOf(current);
    const steps = PHASES.map((p, i) => {
      let state = "pending";
      if (job.status === "succeeded" || (index >= 0 && i < index)) state = "done";
      else if (p === current) state = TERMINAL.has(job.status) ? "stopped" : "current";
      return el("li", { class: "phase phase-" + state, "data-phase": p }, p);
    });
    const list = el(
      "ol",
      { class: "events" },
      events.map((ev) =>
        el(
          "li",
          { class: "event-" + String(ev.type || ev.kind || "").replace(/[^a-z_]/g, "") },
          el("span", { class: "mono muted" }, when(ev.time || ev.created_at || ev.at)),
          " ",
          el("strong", {}, ev.type || ev.kind || ""),
          ev.attempt !== undefined && ev.attempt !== null ? el("span", { class: "muted" }, " (attempt " + ev.attempt + ")") : null,
          " ",
          ev.message || ""
        )
      )
    );
    return el("div", { id: "timeline" }, el("ol", { class: "phases" }, steps), list);
  }

  /** Draw one SVG line chart per stage, one line per metric name. */
  function lossCharts(rows) {
    const byStage = new Map();
    for (const r of rows) {
      if (!byStage.has(r.stage)) byStage.set(r.stage, new Map());
      const names = byStage.get(r.stage);
      if (!names.has(r.name)) names.set(r.name, []);
      names.get(r.name).push(r);
    }
    if (!byStage.size) return el("p", { class: "muted", id: "no-metrics" }, "No metrics yet.");
    const charts = [];
    for (const [stage, names] of byStage) {
      charts.push(lineChart(stage, names));
    }
    return el("div", { class: "charts" }, charts);
  }

  function lineChart(stage, names) {
    const W = 460, H = 220, L = 52, R = 12, T = 24, B = 30;
    let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    for (const points of names.values()) {
      points.sort((a, b) => a.step - b.step);
      for (const p of points) {
        xmin = Math.min(xmin, p.step); xmax = Math.max(xmax, p.step);
        ymin = Math.min(ymin, p.value); ymax = Math.max(ymax, p.value);
      }
    }
    if (xmax === xmin) xmax = xmin + 1;
    if (ymax === ymin) { ymax += 0.5; ymin -= 0.5; }
    const sx = (x) => L + ((x - xmin) / (xmax - xmin)) * (W - L - R);
    const sy = (y) => T + (1 - (y - ymin) / (ymax - ymin)) * (H - T - B);
    const chart = svg("svg", { class: "chart loss-chart", viewBox: "0 0 " + W + " " + H, role: "img", "data-stage": stage, "aria-label": "loss curves for " + stage });
    chart.append(svg("text", { x: L, y: 15, class: "chart-title" }, stage));
    for (let i = 0; i <= 4; i += 1) {
      const y = ymin + ((ymax - ymin) * i) / 4;
      chart.append(svg("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
      chart.append(svg("text", { x: L - 6, y: sy(y) + 4, class: "tick", "text-anchor": "end" }, y.toPrecision(3)));
    }
    chart.append(svg("text", { x: L, y: H - 8, class: "tick" }, "step " + xmin));
    chart.append(svg("text", { x: W - R, y: H - 8, class: "tick", "text-anchor": "end" }, "step " + xmax));
    let i = 0;
    const legend = el("div", { class: "legend" });
    for (const [name, points] of names) {
      const color = COLORS[i % COLORS.length];
      const coords = points.map((p) => sx(p.step).toFixed(1) + "," + sy(p.value).toFixed(1)).join(" ");
      chart.append(svg("polyline", { points: coords, fill: "none", stroke: color, "stroke-width": 1.8, class: "series", "data-name": name }));
      const last = points[points.length - 1];
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = color;
      legend.append(el("span", { class: "legend-item" }, swatch, name + " " + Number(last.value).toPrecision(4)));
      i += 1;
    }
    return el("figure", { class: "chart-box" }, chart, legend);
  }

  /** Normalise a job summary into {student: {domain: miou%}, references: {name: {domain: miou%}}}. */
  function summaryRows(summary) {
    const rows = new Map();
    if (!summary || typeof summary !== "object") return rows;
    const domains = (obj) => {
      const out = {};
      if (!obj || typeof obj !== "object") return out;
      for (const [d, v] of Object.entries(obj)) {
        const value = pct(v && typeof v === "object" ? v.miou : v);
        if (value !== null) out[d] = value;
      }
      return out;
    };
    const student = domains(summary.student || summary.domains);
    if (Object.keys(student).length) rows.set("student", student);
    for (const [name, ref] of Object.entries(summary.references || {})) rows.set(name, domains(ref));
    return rows;
  }

  /**
   * Grouped SVG bars: one group per domain, one bar per series (mIoU in %, 0-100).
   * series: [{key, label, values: {domain: pct}}]; opts: {id, dataKey (the bar's data-* name), ariaLabel}.
   */
  function groupedBars(series, opts) {
    const domains = [];
    for (const s of series) for (const d of Object.keys(s.values)) if (!domains.includes(d)) domains.push(d);
    const L = 40, R = 10, T = 14, B = 44, H = 240;
    const W = Math.max(520, L + R + domains.length * (series.length * 14 + 16));
    const groupW = (W - L - R) / Math.max(1, domains.length);
    const barW = Math.max(4, (groupW - 12) / Math.max(1, series.length));
    const sy = (v) => T + (1 - Math.max(0, Math.min(100, v)) / 100) * (H - T - B);
    const chart = svg("svg", { id: opts.id, class: "chart bars-chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": opts.ariaLabel });
    chart.style.width = W + "px";
    for (const v of [0, 25, 50, 75, 100]) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: "grid" }));
      chart.append(svg("text", { x: L - 5, y: sy(v) + 4, class: "tick", "text-anchor": "end" }, String(v)));
    }
    domains.forEach((domain, di) => {
      const x0 = L + di * groupW + 6;
      series.forEach((s, si) => {
        const value = s.values[domain];
        if (value === undefined) return;
        const attrs = { x: x0 + si * barW, y: sy(value), width: barW - 2, height: sy(0) - sy(value), fill: COLORS[si % COLORS.length], class: "bar-rect", "data-domain": domain };
        attrs["data-" + opts.dataKey] = s.key;
        chart.append(svg("rect", attrs, svg("title", {}, s.label + " on " + domain + ": " + value.toFixed(1) + " mIoU")));
      });
      chart.append(svg("text", { x: x0 + (groupW - 12) / 2, y: H - 26, class: "tick", "text-anchor": "middle" }, domain));
    });
    const legend = el(
      "div",
      { class: "legend" },
      series.map((s, i) => {
        const sw = el("span", { class: "swatch" });
        sw.style.background = COLORS[i % COLORS.length];
        return el("span", { class: "legend-item" }, sw, s.label);
      })
    );
    return { figure: el("figure", { class: "chart-box" }, chart, legend), domains: domains };
  }

  function miouChart(rows) {
    const names = Array.from(rows.keys());
    const bars = groupedBars(names.map((n) => ({ key: n, label: n, values: rows.get(n) })), { id: "miou-chart", dataKey: "model", ariaLabel: "per-domain mIoU" });
    const domains = bars.domains;
    const table = el(
      "table",
      { id: "reference-table", class: "scores" },
      el("thead", {}, el("tr", {}, el("th", {}, "model"), domains.map((d) => el("th", {}, d)))),
      el(
        "tbody",
        {},
        names.map((n) =>
          el("tr", { class: n === "student" ? "student-row" : "" }, el("td", {}, n), domains.map((d) => el("td", { class: "num" }, rows.get(n)[d] === undefined ? "-" : rows.get(n)[d].toFixed(1))))
        )
      )
    );
    return el("div", { class: "miou" }, bars.figure, table);
  }

  /**
   * Where an artifact can be fetched. Over S3 that is a presigned URL the browser opens itself: no API key
   * leaves for the bucket, the bucket needs no CORS rules, and a large file never sits in page memory.
   * A local store has no URLs: then the link is the keyed download route.
   */
  function artifactLink(jobId, name) {
    return api("/v1/jobs/" + encodeURIComponent(jobId) + "/artifacts/" + encodeURIComponent(name) + ":link");
  }

  /** The file behind a keyed link as a blob URL (an <a> or <img> cannot send the key). */
  async function keyedBlobUrl(url) {
    const response = await fetch(url, { headers: { Authorization: "Bearer " + apiKey() } });
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch (err) { problem = null; }
      throw new ApiError(response.status, problem);
    }
    return URL.createObjectURL(await response.blob());
  }

  async function downloadArtifact(jobId, artifact, button) {
    button.disabled = true;
    const original = button.textContent;
    button.textContent = "Downloading…";
    try {
      const link = await artifactLink(jobId, artifact.name);
      const href = link.requires_key ? await keyedBlobUrl(link.url) : link.url;
      const anchor = el("a", { href: href, download: artifact.name, rel: "noopener" });
      document.body.append(anchor);
      anchor.click();
      anchor.remove();
      if (link.requires_key) setTimeout(() => URL.revokeObjectURL(href), 10000);
      button.textContent = original;
    } catch (err) {
      button.textContent = "Failed: " + err.message;
    } finally {
      button.disabled = false;
    }
  }

  function artifactTable(jobId, artifacts) {
    if (!artifacts.length) return el("p", { class: "muted", id: "artifacts" }, "No artifacts yet.");
    return el(
      "table",
      { id: "artifacts", class: "scores" },
      el("thead", {}, el("tr", {}, ["name", "kind", "size", "sha256", ""].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        artifacts.map((a) => {
          const button = el("button", { type: "button", class: "download", "data-artifact": a.name }, "Download");
          button.addEventListener("click", () => downloadArtifact(jobId, a, button));
          return el("tr", {}, el("td", {}, a.name), el("td", {}, a.kind || ""), el("td", { class: "num" }, bytes(a.size)), el("td", { class: "mono", title: a.sha256 || "" }, String(a.sha256 || "-").slice(0, 12)), el("td", {}, button));
        })
      )
    );
  }

  async function renderJob(jobId) {
    clear(app);
    const root = el("section", { id: "job-page" }, el("p", { class: "muted" }, "Loading job…"));
    app.append(el("p", {}, el("a", { href: "#/jobs" }, "← all jobs")), root);
    const metrics = new Map();
    let firstPaint = true;

    const gen = routeGen;
    let latest = 0; // a click may start a refresh while one is in flight: only the latest paints and polls on
    async function refresh() {
      if (gen !== routeGen) return;
      const mine = ++latest;
      let cat, job, events, artifacts, newRows, evals;
      try {
        [cat, job, events, artifacts, newRows, evals] = await Promise.all([
          catalog(),
          api(base),
          api(base + "/events"),
          api(base + "/artifacts"),
          metricsSince(metricsAfter),
          api(base + "/evaluations"),
        ]);
      } catch (err) {
        if (gen !== routeGen || mine !== latest) return;
        clear(root);
        root.append(errorBox(err));
        return;
      }
      if (gen !== routeGen || mine !== latest) return;
      for (const r of newRows.rows) metrics.set(r.stage + "|" + r.name + "|" + r.step, r);
      metricsAfter = newRows.cursor;
      evals = listOf(evals, "items");
      paint(job, listOf(events, "events"), listOf(artifacts, "artifacts"), cat.phases, evals);
      const busy = !TERMINAL.has(job.status) || evals.some((e) => !TERMINAL.has(e.status));
      if (busy || newRows.more) later(refresh, newRows.more ? 0 : 2000);
    }
    const base = "/v1/jobs/" + encodeURIComponent(jobId);
    // The metrics cursor: each refresh reads only the rows written since (every stage counts its steps from
    // 1, so a step number cannot say where to go on), page after page for a long job's first load.
    let metricsAfter = 0;
    async function metricsSince(after) {
      const rows = [];
      let cursor = after;
      for (let page = 0; page < METRIC_PAGES_PER_REFRESH; page++) {
        const body = await api(base + "/metrics?after=" + cursor);
        rows.push(...listOf(body, "items"));
        if (body && body.next_after !== null && body.next_after !== undefined) cursor = body.next_after;
        if (!body || !body.more) return { rows: rows, cursor: cursor, more: false };
      }
      return { rows: rows, cursor: cursor, more: true };
    }
    // The training log is fetched when its section is opened (and again with its button), not on every poll;
    // what was fetched and whether the section is open survive the repaints.
    const logView = { open: false, text: null, error: null };
    async function loadLog() {
      try {
        const stored = listOf(await api(base + "/logs"), "items");
        if (!stored.length) {
          logView.text = "No training log yet: one is stored when an attempt's training ends.";
        } else {
          const last = stored[stored.length - 1].attempt;
          const text = await api(base + "/logs/" + last + "?tail_lines=" + LOG_TAIL_LINES, { text: true });
          logView.text = "attempt " + last + ", last " + LOG_TAIL_LINES + " lines:\n" + text;
        }
        logView.error = null;
      } catch (err) {
        logView.error = err;
      }
      const pre = document.getElementById("log-text");
      if (pre) pre.textContent = logView.error ? String(logView.error.message || logView.error) : logView.text;
    }
    function logSection() {
      const shown = logView.error ? String(logView.error.message || logView.error) : (logView.text ?? "Loading…");
      const pre = el("pre", { id: "log-text", class: "spec" }, shown);
      const reload = el("button", { type: "button", id: "log-reload", class: "small" }, "Reload");
      reload.addEventListener("click", loadLog);
      const details = el("details", { id: "training-log", open: logView.open }, el("summary", {}, "Training log"), reload, pre);
      details.addEventListener("toggle", () => {
        logView.open = details.open;
        if (details.open && logView.text === null && logView.error === null) loadLog();
      });
      return details;
    }
    // What is typed into the evaluation form, and its last error, survive the repaints while polling.
    let evalDraft = "";
    let evalError = null;

    function evaluationSection(job, evals) {
      const ready = job.status === "succeeded";
      const input = el("input", { id: "eval-targets", type: "text", size: 40, placeholder: "dataset:split, dataset:split", disabled: !ready });
      input.value = evalDraft;
      input.addEventListener("input", () => { evalDraft = input.value; });
      const submit = el("button", { type: "submit", id: "eval-submit", disabled: !ready }, "Evaluate");
      const form = el(
        "form",
        { id: "eval-form", class: "eval-form" },
        el("label", { for: "eval-targets" }, "Score the student, and each file it shipped, on more domains"),
        el("div", { class: "eval-row" }, input, submit),
        ready ? null : el("p", { class: "muted" }, "A job can be evaluated once it has succeeded."),
        evalError ? el("div", { class: "error", id: "eval-error", role: "alert" }, problemLines(evalError)) : null
      );
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const targets = parseTargets(input.value);
        if (!targets.length) return;
        submit.disabled = true;
        try {
          await api(base + "/evaluations", { method: "POST", body: { targets: targets } });
          evalDraft = "";
          evalError = null;
        } catch (err) {
          evalError = err;
        }
        stopTimers();
        refresh();
      });
      const list = evals.length ? evals.map(evaluationCard) : el("p", { class: "muted", id: "no-evaluations" }, "No evaluations yet.");
      return [el("h3", {}, "Evaluations"), form, el("div", { id: "evaluations" }, list)];
    }

    function evaluationCard(evaluation) {
      let cancel = null;
      if (!TERMINAL.has(evaluation.status)) {
        cancel = el("button", { type: "button", class: "danger cancel-eval", disabled: evaluation.status === "cancelling" }, "Cancel");
        cancel.addEventListener("click", async () => {
          cancel.disabled = true;
          try {
            await api("/v1/evaluations/" + encodeURIComponent(evaluation.id) + "/cancel", { method: "POST" });
          } catch (err) {
            evalError = err;
          }
          stopTimers();
          refresh();
        });
      }
      const targets = (evaluation.targets || []).map((t) => t.dataset + ":" + t.split).join(", ");
      return el(
        "div",
        { class: "evaluation", "data-evaluation": evaluation.id, "data-status": evaluation.status },
        el(
          "div",
          { class: "evaluation-head" },
          badge(evaluation.status),
          el("span", { class: "eval-targets" }, targets),
          el("span", { class: "muted", title: evaluation.created_at || "" }, age(evaluation.created_at) + " ago"),
          cancel
        ),
        evaluation.error ? el("div", { class: "error" }, evaluation.error) : null,
        evaluation.results ? evaluationResults(evaluation.results) : null
      );
    }

    function paint(job, events, artifacts, phaseNames, evals) {
      const cancel = el("button", { type: "button", id: "cancel-job", class: "danger", disabled: TERMINAL.has(job.status) || job.status === "cancelling" }, "Cancel job");
      cancel.addEventListener("click", async () => {
        if (!window.confirm("Cancel this job?")) return;
        cancel.disabled = true;
        try {
          await api("/v1/jobs/" + encodeURIComponent(jobId) + "/cancel", { method: "POST" });
        } catch (err) {
          root.prepend(errorBox(err));
        }
        stopTimers();
        refresh();
      });
      const facts = el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Status"), el("dd", { id: "job-status" }, badge(job.status)),
        // A queued job held back by its team's limits says why (it starts by itself when capacity frees).
        job.waiting_reason ? [el("dt", {}, "Waiting"), el("dd", { id: "job-waiting" }, job.waiting_reason)] : null,
        el("dt", {}, "Phase"), el("dd", { id: "job-phase" }, job.phase || "-"),
        el("dt", {}, "Progress"), el("dd", {}, progressBar(job.progress)),
        el("dt", {}, "ETA"), el("dd", {}, duration(job.eta_s)),
        el("dt", {}, "Attempt"), el("dd", {}, String(job.attempt ?? "-") + (job.max_attempts ? " / " + job.max_attempts : "")),
        el("dt", {}, "Method"), el("dd", {}, (job.spec && job.spec.method) || "-"),
        el("dt", {}, "Created"), el("dd", { title: job.created_at || "" }, age(job.created_at) + " ago"),
        el("dt", {}, "Id"), el("dd", { class: "mono" }, job.id)
      );
      const errorReason = job.error_reason || (job.error && job.error.reason);
      const errorDetail = job.error_detail || (job.error && job.error.detail);
      const rows = summaryRows(job.summary);
      const sections = [
        el("div", { class: "job-head" }, el("h2", { id: "job-name" }, job.name || job.id), cancel),
        facts,
        errorReason || errorDetail ? el("div", { class: "error", id: "job-error" }, (errorReason ? errorReason + ": " : "") + (errorDetail || "")) : null,
        el("h3", {}, "Timeline"),
        phaseTimeline(job, events, phaseNames),
        el("h3", {}, "Loss curves"),
        el("div", { id: "loss-curves" }, lossCharts(Array.from(metrics.values()))),
        el("h3", {}, "Per-domain mIoU"),
        rows.size ? miouChart(rows) : el("p", { class: "muted", id: "no-summary" }, "Results appear when the job has been evaluated."),
        deployedSection(job.summary),
        reportSection(jobId, job.summary, artifacts),
        el("h3", {}, "Artifacts"),
        artifactTable(jobId, artifacts),
        evaluationSection(job, evals),
        logSection(),
        el("details", {}, el("summary", {}, "Spec"), el("pre", { class: "spec" }, JSON.stringify(job.spec || {}, null, 2))),
      ];
      const scrollY = window.scrollY;
      const typing = document.activeElement && document.activeElement.id === "eval-targets" ? document.activeElement : null;
      const selection = typing ? [typing.selectionStart, typing.selectionEnd, typing.selectionDirection] : null;
      clear(root);
      appendAll(root, sections);
      if (selection) {
        const input = document.getElementById("eval-targets");
        input.focus();
        input.setSelectionRange(...selection);
      }
      if (!firstPaint) window.scrollTo(0, scrollY);
      firstPaint = false;
    }

    await refresh();
  }

  /**
   * The shipped files (ONNX, INT8) scored per domain beside PyTorch: summary.deployed holds their metrics and
   * each student row their parity ({miou, diff_points, within_tolerance}); drift beyond tolerance is marked.
   */
  function deployedSection(summary) {
    const kinds = Object.keys((summary && summary.deployed) || {});
    const student = (summary && summary.student) || {};
    if (!kinds.length) return null;
    const head = el("tr", {}, el("th", {}, "domain"), el("th", {}, "PyTorch"), kinds.flatMap((k) => [el("th", {}, k), el("th", {}, k + " diff (points)")]));
    const body = Object.entries(student).map(([domain, row]) => el(
      "tr",
      { "data-domain": domain },
      el("td", {}, domain),
      el("td", {}, row && typeof row.miou === "number" ? pct(row.miou).toFixed(1) : "-"),
      kinds.flatMap((kind) => parityCells(row && row[kind], kind))
    ));
    return [
      el("h3", {}, "Deployed files (onnxruntime)"),
      el("table", { id: "deployed-table", class: "scores" }, el("thead", {}, head), el("tbody", {}, body)),
    ];
  }

  /** A shipped file's mIoU and its difference from PyTorch in points, marked past the tolerance. */
  function parityCells(check, kind) {
    if (!check || typeof check !== "object") return [el("td", {}, "-"), el("td", {}, "-")];
    const drift = check.within_tolerance === false;
    const diff = typeof check.diff_points === "number" ? (check.diff_points >= 0 ? "+" : "") + check.diff_points.toFixed(2) : "-";
    return [
      el("td", {}, typeof check.miou === "number" ? pct(check.miou).toFixed(1) : "-"),
      el("td", { class: drift ? "drift" : "", "data-kind": kind, title: drift ? "differs from PyTorch by more than the tolerance" : "" }, diff + (drift ? " ⚠" : "")),
    ];
  }

  /** One evaluation's rows: PyTorch mIoU per domain, each shipped file beside it, pixel accuracy, images. */
  function evaluationResults(results) {
    const rows = Object.entries(results || {}).filter(([, row]) => row && typeof row === "object");
    const kinds = Array.from(new Set(rows.flatMap(([, row]) => Object.keys(row).filter((k) => row[k] && typeof row[k] === "object" && "diff_points" in row[k])))).sort();
    const head = el("tr", {}, el("th", {}, "domain"), el("th", {}, "mIoU"), kinds.flatMap((k) => [el("th", {}, k), el("th", {}, k + " diff (points)")]), el("th", {}, "pixel acc"), el("th", {}, "images"));
    const body = rows.map(([domain, row]) => el(
      "tr",
      { "data-domain": domain },
      el("td", {}, domain),
      el("td", { class: "num" }, typeof row.miou === "number" ? pct(row.miou).toFixed(1) : "-"),
      kinds.flatMap((kind) => parityCells(row[kind], kind)),
      el("td", { class: "num" }, typeof row.pixel_accuracy === "number" ? pct(row.pixel_accuracy).toFixed(1) : "-"),
      el("td", { class: "num" }, row.images === undefined || row.images === null ? "-" : String(row.images))
    ));
    return el("table", { class: "scores eval-results" }, el("thead", {}, head), el("tbody", {}, body));
  }

  /**
   * The job's robustness report (summary.report, also report.json among the artifacts): the fraction of the
   * teacher's lead the student carries, and linear CKA to the teacher per domain; report.png drawn inline.
   */
  function reportSection(jobId, summary, artifacts) {
    const report = summary && summary.report;
    if (!report || typeof report !== "object") return null;
    const lead = report.teacher_lead_carried;
    const carried = lead && typeof lead.target_average === "number"
      ? "The student carries " + (lead.target_average * 100).toFixed(0) + "% of the teacher's lead over no-KD on the target average."
      : "No teacher-lead fraction: it needs both the teacher and student_frozen reference rows (and a lead of at least " + ((lead && lead.min_lead_points) || 0.5) + " points).";
    const cka = report.cka_to_teacher || {};
    const domains = report.domains || [];
    const ckaTable = Object.keys(cka).length
      ? el(
          "table",
          { id: "cka-table", class: "scores" },
          el("thead", {}, el("tr", {}, el("th", {}, "CKA to teacher"), domains.map((d) => el("th", {}, d)))),
          el("tbody", {}, Object.entries(cka).map(([name, per]) => el("tr", { "data-model": name }, el("td", {}, name), domains.map((d) => el("td", {}, typeof per[d] === "number" ? per[d].toFixed(3) : "-")))))
        )
      : el("p", { class: "muted" }, "No CKA to the teacher: this job's method did not run the teacher.");
    const chart = el("img", { id: "report-chart", alt: "robustness report chart", hidden: true });
    if (artifacts.some((a) => a.name === "report.png")) loadReportChart(jobId, chart);
    return [el("h3", {}, "Robustness report"), el("p", { id: "report-lead" }, carried), ckaTable, chart];
  }

  // report.png of the job page on screen, fetched once: its repaints (every 2 s while anything runs) reuse it.
  let chartSource = null; // { jobId, url: Promise<{ href, blob }> }

  /** Show report.png from its presigned URL, or from a blob fetched with the key where the store has no URLs. */
  async function loadReportChart(jobId, img) {
    if (!chartSource || chartSource.jobId !== jobId) {
      if (chartSource) chartSource.url.then((u) => u.blob && URL.revokeObjectURL(u.href)).catch(() => {});
      const url = artifactLink(jobId, "report.png").then(async (link) => ({
        href: link.requires_key ? await keyedBlobUrl(link.url) : link.url,
        blob: link.requires_key,
      }));
      chartSource = { jobId: jobId, url: url };
    }
    const source = chartSource;
    try {
      img.src = (await source.url).href;
      img.hidden = false;
    } catch (err) {
      if (chartSource === source) chartSource = null; // try again on the next paint
      img.hidden = true;
    }
  }

  // ----- datasets ---------------------------------------------------------------------------

  /** A dataset's size per split from its report: "train 8, val 4 pairs" or "train 1200 images". */
  function splitSummary(ds) {
    const report = ds.report || {};
    const labels = report.labels !== false;
    const parts = Object.entries(report.splits || {}).map(([name, c]) => name + " " + ((labels ? c && c.pairs : c && c.images) ?? 0));
    return parts.length ? parts.join(", ") + (labels ? " pairs" : " images") : "-";
  }

  /** A dataset's rows: its figures with a Delete button, then its problems when it has any. */
  function datasetRow(ds, remove) {
    const report = ds.report || {};
    const problems = report.problems || [];
    const counts = Object.values(report.problem_counts || {}).reduce((a, b) => a + Number(b || 0), 0) || problems.length;
    const when = ds.status === "validating" ? "validating since " + (report.started_at || "-") : age(ds.updated_at) + " ago";
    const row = el(
      "tr",
      { "data-dataset": ds.name, "data-status": ds.status },
      el("td", {}, ds.name),
      el("td", {}, ds.layout + (report.labels === false ? " (images only)" : "")),
      el("td", {}, badge(ds.status)),
      el("td", { class: "size" }, splitSummary(ds)),
      el("td", { class: "num" }, String(counts)),
      el("td", { class: "muted", title: ds.updated_at || "" }, when),
      el("td", {}, remove(ds.name))
    );
    if (!problems.length) return [row];
    const details = el(
      "tr",
      { class: "problems", "data-problems": ds.name },
      el("td", { colspan: 7 }, el("details", {}, el("summary", {}, "Problems"), el("ul", {}, problems.slice(0, 20).map((p) => el("li", {}, [p.kind, [p.split, p.name].filter(Boolean).join("/")].filter(Boolean).join(" ") + ": " + (p.detail || ""))))))
    );
    return [row, details];
  }

  async function renderDatasets() {
    clear(app);
    const gen = routeGen;
    const cat = await catalog().catch(() => ({ layouts: [] }));
    if (gen !== routeGen) return;
    const name = el("input", { id: "ds-name", name: "name", type: "text", required: true, size: 24 });
    const layout = el("select", { id: "ds-layout", name: "layout" }, (cat.layouts || []).map((l) => el("option", { value: l.name, title: l.summary || "" }, l.name)));
    const uri = el("input", { id: "ds-uri", name: "uri", type: "text", required: true, size: 48, placeholder: "file:///data/cityscapes or s3://bucket/prefix" });
    const classes = el("input", { id: "ds-classes", name: "classes", type: "text", size: 32, placeholder: "optional: road, car, ..." });
    const errors = el("div", { id: "ds-errors" });
    const status = el("p", { id: "ds-status", class: "muted" });
    const submit = el("button", { type: "submit", id: "ds-submit" }, "Register");
    const form = el(
      "form",
      { id: "dataset-form", class: "card", novalidate: true },
      el("h2", {}, "Register a dataset"),
      el("p", { class: "muted" }, "The server validates it (every pairing and header, a sample of labels) and keeps the report; a large set is validated in the background."),
      el("div", { class: "dataset-fields" },
        el("div", { class: "field" }, el("label", { for: "ds-name" }, "Name"), name),
        el("div", { class: "field" }, el("label", { for: "ds-layout" }, "Layout"), layout),
        el("div", { class: "field" }, el("label", { for: "ds-uri" }, "URI"), uri),
        el("div", { class: "field" }, el("label", { for: "ds-classes" }, "Classes"), classes)),
      errors,
      el("div", { class: "actions" }, submit),
      status
    );
    const table = el("div", { id: "datasets" }, el("p", { class: "muted" }, "Loading datasets…"));
    const notice = el("div", { id: "datasets-notice" });
    app.append(el("h2", {}, "Datasets"), notice, table, form);
    let latest = 0;

    /** Forgets the registration (the server refuses while a job or evaluation reads it, and says which). */
    function removeButton(dsName) {
      const button = el("button", { type: "button", class: "danger small", "data-delete": dsName }, "Delete");
      button.addEventListener("click", async () => {
        if (!window.confirm("Delete dataset " + dsName + "? Its files are not touched.")) return;
        button.disabled = true;
        clear(notice);
        try {
          await api("/v1/datasets/" + encodeURIComponent(dsName), { method: "DELETE" });
          notice.append(el("p", { class: "muted", role: "status" }, "deleted dataset " + dsName + " (its files are untouched)"));
        } catch (err) {
          notice.append(errorBox(err));
          button.disabled = false;
        }
        stopTimers();
        refresh();
      });
      return button;
    }

    async function refresh() {
      if (gen !== routeGen) return;
      const mine = ++latest;
      let items;
      try {
        items = listOf(await api("/v1/datasets"), "items");
      } catch (err) {
        if (gen !== routeGen || mine !== latest) return;
        clear(table);
        table.append(errorBox(err));
        return;
      }
      if (gen !== routeGen || mine !== latest) return;
      clear(table);
      table.append(items.length
        ? el("table", { class: "scores", id: "datasets-table" },
            el("thead", {}, el("tr", {}, ["name", "layout", "status", "size", "problems", "updated", ""].map((h) => el("th", {}, h)))),
            el("tbody", {}, items.flatMap((ds) => datasetRow(ds, removeButton))))
        : el("p", { class: "muted", id: "no-datasets" }, "No datasets yet."));
      if (items.some((d) => d.status === "validating")) later(refresh, 2000);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clear(errors);
      const body = { name: name.value.trim(), layout: layout.value, uri: uri.value.trim() };
      const names = classes.value.split(",").map((c) => c.trim()).filter(Boolean);
      if (names.length) body.classes = names;
      submit.disabled = true;
      try {
        const ds = await api("/v1/datasets", { method: "POST", body: body });
        status.textContent = "registered " + ds.name + ": " + ds.status;
      } catch (err) {
        errors.append(el("div", { class: "error", role: "alert" }, problemLines(err)));
      } finally {
        submit.disabled = false;
      }
      stopTimers();
      refresh();
    });
    await refresh();
  }

  // ----- compare ----------------------------------------------------------------------------

  function compareIds(hash) {
    const query = hash.indexOf("?") >= 0 ? hash.slice(hash.indexOf("?") + 1) : "";
    const raw = new URLSearchParams(query).get("jobs") || "";
    return Array.from(new Set(raw.split(",").map((s) => s.trim()).filter(Boolean)));
  }

  /** A job's name, with a short id when two compared jobs share it. */
  function jobLabels(jobs) {
    const labels = new Map();
    for (const job of jobs) {
      const same = jobs.filter((j) => j.name === job.name).length;
      labels.set(job.id, job.name && same === 1 ? job.name : (job.name || "job") + " (" + String(job.id).slice(0, 8) + ")");
    }
    return labels;
  }

  /** ONNX parity as the summary reports it (a number, yes/no, or named figures); null when absent. */
  function figure(v) {
    return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(1) : Number(v.toPrecision(3)).toString();
  }

  function parityText(value) {
    if (value === null || value === undefined) return null;
    if (typeof value === "boolean") return value ? "ok" : "differs";
    if (typeof value === "number") return figure(value);
    if (typeof value === "object" && typeof value.diff_points === "number") {  // the server's own shape
      const text = "mIoU " + (typeof value.miou === "number" ? pct(value.miou).toFixed(1) : "-") + ", " + (value.diff_points >= 0 ? "+" : "") + value.diff_points.toFixed(2) + " points";
      return text + (value.within_tolerance === false ? ", beyond tolerance" : "");
    }
    if (typeof value === "object") {
      return Object.entries(value).map(([k, v]) => {
        if (k === "miou" && typeof v === "number") return "mIoU " + pct(v).toFixed(1);
        if (typeof v === "number") return k + " " + figure(v);
        return k + " " + String(v);
      }).join(", ");
    }
    return String(value);
  }

  function onnxParity(summary, domain) {
    const entry = summary && summary.student && summary.student[domain];
    if (entry && typeof entry === "object" && entry.onnx !== undefined) return entry.onnx;
    return summary && summary.onnx && typeof summary.onnx === "object" ? summary.onnx[domain] : undefined;
  }

  /** Rows of the comparison table: each job's student, then the references (one row when jobs agree). */
  function compareRows(jobs, labels) {
    const rows = [];
    for (const job of jobs) {
      const student = summaryRows(job.summary).get("student");
      if (student) rows.push({ model: "student", jobs: [job.id], values: student, student: true });
    }
    for (const job of jobs) {
      for (const [name, values] of summaryRows(job.summary)) {
        if (name === "student") continue;
        const key = JSON.stringify(Object.entries(values).map(([d, v]) => [d, v.toFixed(2)]).sort());
        const match = rows.find((r) => !r.student && r.model === name && r.key === key);
        if (match) match.jobs.push(job.id);
        else rows.push({ model: name, jobs: [job.id], values: values, student: false, key: key });
      }
    }
    for (const r of rows) r.label = r.jobs.map((id) => labels.get(id)).join(", ");
    return rows;
  }

  async function renderCompare(ids) {
    const gen = routeGen;
    if (ids.length) {
      // The URL is the selection: the list shows these jobs ticked when you go back to it.
      listState.selected = new Map(ids.map((id) => [id, listState.selected.get(id) || id]));
    }
    const results = await Promise.all(
      ids.map((id) => api("/v1/jobs/" + encodeURIComponent(id)).then((job) => ({ id: id, job: job }), (err) => ({ id: id, err: err })))
    );
    if (gen !== routeGen) return;
    clear(app);
    const root = el("section", { id: "compare-page" });
    app.append(el("p", {}, el("a", { href: "#/jobs" }, "← all jobs")), root);
    root.append(el("h2", {}, "Compare jobs"));
    if (!ids.length) {
      root.append(el("p", { class: "muted", id: "compare-empty" }, "Tick two or more jobs in the list and press Compare."));
      return;
    }
    for (const r of results) {
      if (!r.err) continue;
      root.append(errorBox("job " + r.id + ": " + r.err.message));
      if (r.err.status === 404) listState.selected.delete(r.id);
    }
    const jobs = results.filter((r) => r.job).map((r) => r.job);
    for (const job of jobs) listState.selected.set(job.id, job.name || job.id);
    const labels = jobLabels(jobs);

    const jobTable = el(
      "table",
      { id: "compare-jobs", class: "scores" },
      el("thead", {}, el("tr", {}, ["", "job", "status", "method", "id", ""].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        jobs.map((job, i) => {
          const sw = el("span", { class: "swatch" });
          sw.style.background = COLORS[i % COLORS.length];
          const others = jobs.map((j) => j.id).filter((id) => id !== job.id);
          const remove = el("button", { type: "button", class: "link-dark remove-job", "data-job-id": job.id }, "remove");
          remove.addEventListener("click", () => {
            listState.selected.delete(job.id);
            location.hash = compareHash(others);
          });
          return el(
            "tr",
            { "data-job-id": job.id },
            el("td", {}, sw),
            el("td", {}, el("a", { href: "#/jobs/" + encodeURIComponent(job.id) }, labels.get(job.id))),
            el("td", {}, badge(job.status)),
            el("td", {}, (job.spec && job.spec.method) || job.method || "-"),
            el("td", { class: "mono muted" }, String(job.id).slice(0, 8)),
            el("td", {}, remove)
          );
        })
      )
    );
    root.append(jobTable);

    const series = [];
    jobs.forEach((job) => {
      const student = summaryRows(job.summary).get("student");
      series.push({ key: job.id, label: labels.get(job.id), values: student || {} });
    });
    const scored = series.filter((s) => Object.keys(s.values).length);
    const waiting = jobs.filter((job) => !summaryRows(job.summary).size);
    if (waiting.length) {
      root.append(el("p", { class: "muted", id: "compare-waiting" }, "No results yet: " + waiting.map((j) => labels.get(j.id) + " (" + j.status + ")").join(", ")));
    }
    root.append(el("h3", {}, "Student mIoU per domain"));
    if (!scored.length) {
      root.append(el("p", { class: "muted", id: "no-summary" }, "Results appear when the jobs have been evaluated."));
    } else {
      // Every job keeps its colour (and legend entry) even when it has no scores yet.
      const bars = groupedBars(series, { id: "compare-chart", dataKey: "job", ariaLabel: "per-domain mIoU of the compared jobs" });
      const rows = compareRows(jobs, labels);
      const table = el(
        "table",
        { id: "compare-table", class: "scores" },
        el("thead", {}, el("tr", {}, el("th", {}, "model"), el("th", {}, "job"), bars.domains.map((d) => el("th", {}, d)))),
        el(
          "tbody",
          {},
          rows.map((r) =>
            el(
              "tr",
              { class: r.student ? "student-row" : "reference-row", "data-model": r.model },
              el("td", {}, r.model),
              el("td", {}, r.label),
              bars.domains.map((d) => el("td", { class: "num" }, r.values[d] === undefined ? "-" : r.values[d].toFixed(1)))
            )
          )
        )
      );
      root.append(el("div", { class: "miou" }, bars.figure, table));
      const parity = jobs.filter((job) => bars.domains.some((d) => parityText(onnxParity(job.summary, d)) !== null));
      if (parity.length) {
        root.append(
          el("h3", {}, "ONNX parity"),
          el(
            "table",
            { id: "onnx-table", class: "scores" },
            el("thead", {}, el("tr", {}, el("th", {}, "job"), bars.domains.map((d) => el("th", {}, d)))),
            el(
              "tbody",
              {},
              parity.map((job) =>
                el("tr", { "data-job-id": job.id }, el("td", {}, labels.get(job.id)), bars.domains.map((d) => el("td", {}, parityText(onnxParity(job.summary, d)) || "-")))
              )
            )
          )
        );
      }
    }
    if (jobs.some((j) => !TERMINAL.has(j.status))) later(() => { if (gen === routeGen) renderCompare(ids); }, 5000);
  }

  // ----- submit form ------------------------------------------------------------------------

  const FIELDS = [
    ["name", "Name", "text", "my-distillation"],
    ["teacher.model", "Teacher model", "text", "vit_base_patch14_dinov2"],
    ["teacher.weights", "Teacher weights", "text", "timm"],
    ["student.model", "Student model", "text", "deit_small_patch16_224"],
    ["student.weights", "Student weights", "text", "none"],
    ["method", "Method", "select", "gkd", "methods"],
    ["source.dataset", "Source dataset", "text", ""],
    ["source.split", "Source split", "text", "train"],
    ["targets", "Targets (dataset:split, comma separated)", "text", ""],
    ["stage1.steps", "Stage 1 steps", "number", "1000"],
    ["stage1.batch_size", "Stage 1 batch size", "number", "16"],
    ["stage2.steps", "Stage 2 steps", "number", "1000"],
    ["stage2.batch_size", "Stage 2 batch size", "number", "4"],
    ["stage2.head", "Stage 2 head", "select", "fpn", "heads"],
    ["seed", "Seed", "number", "0"],
  ];

  function setPath(obj, path, value) {
    const parts = path.split(".");
    let cur = obj;
    for (const p of parts.slice(0, -1)) cur = cur[p] = cur[p] || {};
    cur[parts[parts.length - 1]] = value;
  }

  /** "fog:val, night" -> [{dataset: "fog", split: "val"}, {dataset: "night", split: "val"}] */
  function parseTargets(raw) {
    return raw.split(",").map((t) => t.trim()).filter(Boolean).map((t) => {
      const [dataset, split] = t.split(":");
      return { dataset: dataset, split: split || "val" };
    });
  }

  /** A field's training stage ("stage1" for "stage1.steps"), or null for a field outside the stage blocks. */
  function stageOf(path) {
    const block = path.split(".")[0];
    return /^stage\d$/.test(block) ? block : null;
  }

  /** The stages of the method chosen in the form, from the server's catalogue. */
  function chosenStages(form, cat) {
    const method = (cat.methods || []).find((m) => m.name === form.elements.namedItem("method").value);
    return method ? method.stages : [];
  }

  /** The spec the fields describe; a stage the method does not have is left out (the server refuses it). */
  function specFromFields(form, cat) {
    const spec = {};
    const stages = chosenStages(form, cat);
    for (const [path, , type] of FIELDS) {
      if (stageOf(path) && !stages.includes(stageOf(path))) continue;
      const raw = form.elements.namedItem(path).value.trim();
      if (raw === "") continue;
      if (path === "targets") {
        setPath(spec, path, parseTargets(raw));
      } else if (type === "number") {
        setPath(spec, path, Number(raw));
      } else {
        setPath(spec, path, raw);
      }
    }
    return spec;
  }

  /** Put each validation error next to the field it names (or its nearest parent field). */
  function showFieldErrors(form, errors, general) {
    for (const node of form.querySelectorAll(".field-error")) node.remove();
    for (const node of form.querySelectorAll(".invalid")) node.classList.remove("invalid");
    clear(general);
    const useJson = form.elements.namedItem("mode-json").checked;
    for (const e of errors) {
      let target = null;
      if (!useJson) {
        const parts = e.field.split(".");
        while (parts.length && !target) {
          target = form.querySelector('[data-field="' + CSS.escape(parts.join(".")) + '"]');
          parts.pop();
        }
      }
      const message = el("div", { class: "field-error", role: "alert", "data-error-for": e.field }, (useJson || !target ? (e.field || "spec") + ": " : "") + e.msg);
      if (target) {
        target.classList.add("invalid");
        target.after(message);
      } else {
        general.append(message);
      }
    }
  }

  async function renderSubmit() {
    stopTimers();
    const gen = routeGen;
    const cat = await catalog();
    if (gen !== routeGen) return;
    clear(app);
    const general = el("div", { id: "form-errors" });
    const fieldset = el(
      "fieldset",
      { id: "spec-fields" },
      FIELDS.map(([path, label, type, value, table]) => {
        const id = "f-" + path.replace(/\./g, "-");
        const input =
          type === "select"
            ? el("select", { id: id, name: path, "data-field": path }, cat[table].map((e) => el("option", { value: e.name, title: e.summary }, e.name)))
            : el("input", { id: id, name: path, type: type, value: value, "data-field": path });
        if (type === "select") input.value = value;
        return el("div", { class: "field" }, el("label", { for: id }, label), input);
      })
    );
    const textarea = el("textarea", { id: "spec-json", name: "spec-json", rows: 22, spellcheck: "false", "data-field": "" });
    const jsonBox = el("div", { id: "json-box", hidden: true }, el("label", { for: "spec-json" }, "Job spec (JSON)"), textarea);
    const modeJson = el("input", { type: "checkbox", id: "mode-json", name: "mode-json" });
    modeJson.addEventListener("change", () => {
      if (modeJson.checked) textarea.value = JSON.stringify(specFromFields(form, cat), null, 2);
      jsonBox.hidden = !modeJson.checked;
      fieldset.hidden = modeJson.checked;
    });
    const status = el("p", { id: "submit-status", class: "muted" });
    const form = el(
      "form",
      { id: "submit-form", class: "card", novalidate: true },
      el("h2", {}, "Submit a job"),
      el("label", { class: "toggle" }, modeJson, " Edit the full spec as JSON"),
      fieldset,
      jsonBox,
      general,
      el("div", { class: "actions" }, el("button", { type: "submit", id: "submit-job" }, "Submit")),
      status
    );
    // Fields of a stage the chosen method does not have are greyed out and not sent.
    function markStages() {
      const stages = chosenStages(form, cat);
      for (const [path] of FIELDS) {
        const stage = stageOf(path);
        if (stage) form.elements.namedItem(path).disabled = !stages.includes(stage);
      }
    }
    form.elements.namedItem("method").addEventListener("change", markStages);
    markStages();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let spec;
      if (modeJson.checked) {
        try {
          spec = JSON.parse(textarea.value);
        } catch (err) {
          showFieldErrors(form, [{ field: "spec", msg: "not valid JSON: " + err.message }], general);
          return;
        }
      } else {
        spec = specFromFields(form, cat);
      }
      status.textContent = "Submitting…";
      try {
        const job = await api("/v1/jobs", { method: "POST", body: spec });
        status.textContent = "";
        location.hash = "#/jobs/" + encodeURIComponent(job.id);
      } catch (err) {
        status.textContent = "";
        const errors = err.errors && err.errors.length ? err.errors : [{ field: "", msg: err.message }];
        showFieldErrors(form, errors, general);
      }
    });
    app.append(form);
  }

  // ----- routing ----------------------------------------------------------------------------

  function route() {
    stopTimers();
    routeGen += 1;
    updateKeyState();
    if (!apiKey()) return showKeyPrompt();
    const hash = location.hash || "#/jobs";
    for (const link of document.querySelectorAll("[data-nav]")) {
      link.classList.toggle("active", hash.startsWith("#/" + link.dataset.nav));
    }
    const match = hash.match(/^#\/jobs\/([^/]+)$/);
    if (match) return renderJob(decodeURIComponent(match[1]));
    if (hash === "#/compare" || hash.startsWith("#/compare?")) {
      const ids = compareIds(hash);
      // The Compare tab opens the current selection, so its URL can be shared.
      if (!ids.length && listState.selected.size) return void (location.hash = compareHash(Array.from(listState.selected.keys())));
      return renderCompare(ids);
    }
    if (hash === "#/submit") return renderSubmit();
    if (hash === "#/datasets") return renderDatasets();
    return renderList();
  }

  document.getElementById("forget-key").addEventListener("click", () => {
    localStorage.removeItem(KEY_STORAGE);
    showKeyPrompt();
  });
  window.addEventListener("hashchange", route);
  route();
})();
