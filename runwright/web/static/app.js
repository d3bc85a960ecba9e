// runwright web view: live refresh, the run waterfall, span details, streams, actions.
// Plain browser JavaScript, no dependencies, no build step. Values from the journal are
// put on the page as text (textContent), or as HTML the server escaped.
"use strict";
(function () {
  const meta = (name) => { const m = document.querySelector(`meta[name="${name}"]`); return m ? m.content : ""; };
  const base = meta("rw-base");
  const csrf = meta("rw-csrf");
  const page = document.body.dataset.page;
  const $ = (sel, root) => (root || document).querySelector(sel);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function toast(message, bad) {
    const t = $("#toast");
    t.textContent = message;
    t.className = bad ? "show bad" : "show";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ""; }, 5000);
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  // -- live: the server says which runs changed; the page reads them again ------------
  function listen(query, refresh) {
    const live = $("#live");
    const source = new EventSource(`${base}/events${query}`);
    let pending = null;
    source.onopen = () => live.classList.add("on");
    source.onerror = () => live.classList.remove("on");
    source.addEventListener("change", () => {
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh().catch((err) => toast(String(err.message || err), true)); }, 100);
    });
    window.addEventListener("pagehide", () => source.close());
    return source;
  }

  // -- the runs list -------------------------------------------------------------------
  if (page === "runs") {
    listen("", async () => {
      const body = await getJSON(`${base}/api/runs${location.search}`);
      $("#runs-body").innerHTML = body.rows;
      $("#pager").innerHTML = body.pager;
    });
  }

  // -- the run page --------------------------------------------------------------------
  if (page === "run") {
    const runId = document.body.dataset.run;
    let data = JSON.parse($("#run-data").textContent);
    let zoom = 1;
    let selected = null;
    const GUTTER = 280;

    function bounds() {
      const run = data.run;
      let t1 = run.finished_at || run.created_at;
      const seen = (t) => { if (typeof t === "number" && t > t1) t1 = t; };
      for (const lane of data.lanes) for (const span of lane.spans) { seen(span.start); seen(span.end); seen(span.until); }
      for (const mark of data.marks) seen(mark.at);
      if (!run.finished_at) seen(Date.now() / 1000);
      return [run.created_at, Math.max(t1, run.created_at + 0.001)];
    }

    function niceStep(seconds) {
      const steps = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400];
      return steps.find((s) => s >= seconds) || 86400 * Math.ceil(seconds / 86400);
    }

    function fmt(seconds) {
      if (seconds === 0) return "0";
      if (seconds < 1) return `${+(seconds * 1000).toFixed(1)} ms`;
      if (seconds < 120) return `${+seconds.toFixed(2)} s`;
      if (seconds < 7200) return `${+(seconds / 60).toFixed(1)} min`;
      return `${+(seconds / 3600).toFixed(1)} h`;
    }

    function draw() {
      const box = $("#waterfall");
      const [t0, t1] = bounds();
      const width = Math.max(200, (box.clientWidth - GUTTER - 20) * zoom);
      const scale = width / (t1 - t0);
      const x = (t) => GUTTER + (t - t0) * scale;
      const canvas = el("div", { class: "canvas" });
      canvas.style.width = `${GUTTER + width + 10}px`;
      const axis = el("div", { class: "axis" });
      const step = niceStep((t1 - t0) / Math.max(2, width / 110));
      for (let t = 0; t <= t1 - t0 + 1e-9; t += step) {
        const tick = el("span", { class: "tick", text: `+${fmt(t)}` });
        tick.style.left = `${GUTTER + t * scale}px`;
        axis.append(tick);
      }
      canvas.append(axis);
      const runLane = el("div", { class: "lane", "data-lane": "run" }, el("span", { class: "label", text: "run" }));
      for (const [i, mark] of data.marks.entries()) {
        const m = el("span", { class: `mark ${mark.kind}`, title: mark.label, "data-mark": String(i) });
        m.style.left = `${x(mark.at)}px`;
        runLane.append(m);
      }
      canvas.append(runLane);
      for (const [i, lane] of data.lanes.entries()) {
        const row = el("div", { class: "lane", "data-kind": lane.kind },
          el("span", { class: "label", title: lane.label, text: `${lane.label} · ${lane.status}` }));
        for (const [j, span] of lane.spans.entries()) {
          const end = typeof span.end === "number" ? span.end : t1;
          const key = `${i}.${j}`;
          const cls = `span ${span.kind} ${span.outcome || ""}${span.end == null ? " open" : ""}${selected === key ? " selected" : ""}`;
          const label = span.attempt ? `attempt ${span.attempt}: ${span.outcome}` : `${span.kind}: ${span.outcome || ""}`;
          const b = el("button", { type: "button", class: cls, title: `${label} (${fmt(end - span.start)})`, "data-span": key });
          b.style.left = `${x(span.start)}px`;
          b.style.width = `${Math.max(3, (end - span.start) * scale)}px`;
          row.append(b);
        }
        canvas.append(row);
      }
      box.replaceChildren(canvas);
    }

    function section(title, ...content) {
      return el("section", null, el("h3", { text: title }), ...content);
    }
    function pre(text, cls) { return text == null ? null : el("pre", { class: cls || "value", text }); }

    async function showSpan(key) {
      selected = key;
      draw();
      const [i, j] = key.split(".").map(Number);
      const lane = data.lanes[i];
      const span = lane.spans[j];
      const panel = $("#detail");
      const close = el("button", { type: "button", class: "close", text: "close" });
      close.addEventListener("click", () => { panel.hidden = true; selected = null; draw(); });
      const parts = [close, el("h2", { text: lane.label })];
      if (lane.kind === "step") {
        const detail = await getJSON(`${base}/api/runs/${encodeURIComponent(runId)}/steps/${lane.cid}`);
        parts.push(section("arguments", pre(detail.args)));
        for (const a of detail.attempts) {
          const head = `attempt ${a.attempt}${a.outcome ? ` · ${a.outcome}` : a.result != null ? " · completed" : ""}`;
          const items = [el("p", { text: `started ${a.started || "-"} · ended ${a.ended || "-"}` })];
          if (a.result != null) items.push(el("h4", { text: "result" }), pre(a.result));
          if (a.error) items.push(el("h4", { text: `error: ${a.error.type}` }), pre(a.error.message), pre(a.error.traceback, "traceback"));
          const attrs = Object.entries(a.attributes || {});
          if (attrs.length) items.push(el("h4", { text: "attributes set" }), pre(attrs.map(([k, v]) => `${k} = ${v}`).join("\n")));
          parts.push(el("section", { class: `attempt${span.attempt === a.attempt ? " current" : ""}` }, el("h3", { text: head }), ...items));
        }
      } else if (lane.kind === "sleep") {
        const until = span.until ? new Date(span.until * 1000).toISOString() : "-";
        parts.push(el("p", { text: `until ${until} · ${span.outcome}` }));
      } else if (lane.kind === "hook") {
        parts.push(el("p", { text: `token ${lane.token} · ${lane.status}` }));
        for (const r of lane.received || []) parts.push(section(`payload at ${new Date(r.at * 1000).toISOString()}`, pre(r.payload)));
      } else if (lane.kind === "child") {
        parts.push(el("p", null, "child run ", el("a", { href: `${base}/runs/${encodeURIComponent(lane.child)}`, class: "child", text: lane.child })));
        parts.push(el("p", { text: `status ${lane.status}` }));
      }
      panel.replaceChildren(...parts.filter(Boolean));
      panel.hidden = false;
    }

    function showMark(index) {
      const mark = data.marks[index];
      const panel = $("#detail");
      const close = el("button", { type: "button", class: "close", text: "close" });
      close.addEventListener("click", () => { panel.hidden = true; });
      panel.replaceChildren(close, el("h2", { text: mark.label }), el("p", { text: new Date(mark.at * 1000).toISOString() }));
      panel.hidden = false;
    }

    $("#waterfall").addEventListener("click", (event) => {
      const span = event.target.closest("[data-span]");
      if (span) { showSpan(span.dataset.span).catch((err) => toast(String(err.message || err), true)); return; }
      const mark = event.target.closest("[data-mark]");
      if (mark) showMark(Number(mark.dataset.mark));
    });
    $("#waterfall").addEventListener("wheel", (event) => {
      if (!event.ctrlKey) return;
      event.preventDefault();
      zoom = Math.min(4096, Math.max(1, zoom * (event.deltaY < 0 ? 1.25 : 0.8)));
      draw();
    }, { passive: false });
    $("#zoom-in").addEventListener("click", () => { zoom = Math.min(4096, zoom * 2); draw(); });
    $("#zoom-out").addEventListener("click", () => { zoom = Math.max(1, zoom / 2); draw(); });
    $("#zoom-reset").addEventListener("click", () => { zoom = 1; draw(); });
    window.addEventListener("resize", draw);
    draw();

    listen(`?run=${encodeURIComponent(runId)}`, async () => {
      const body = await getJSON(`${base}/api/runs/${encodeURIComponent(runId)}`);
      data = body.data;
      const view = $("#stream-view");
      const watching = view && !view.hidden ? view : null;
      // What the viewer typed into a hook's payload survives the refresh.
      const typed = new Map();
      for (const form of document.querySelectorAll("form.hook")) {
        typed.set(form.elements.token.value, form.elements.payload.value);
      }
      $("#summary").innerHTML = body.summary;
      for (const form of document.querySelectorAll("form.hook")) {
        const value = typed.get(form.elements.token.value);
        if (value !== undefined) form.elements.payload.value = value;
      }
      if (watching) $("#stream-view").replaceWith(watching);
      draw();
    });

    // -- streams, live ----------------------------------------------------------------
    let stream = null;
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button.watch");
      if (!button) return;
      const name = button.dataset.stream;
      const view = $("#stream-view");
      if (stream) stream.close();
      view.hidden = false;
      view.textContent = "";
      view.dataset.stream = name;
      stream = new EventSource(`${base}/runs/${encodeURIComponent(runId)}/streams/${encodeURIComponent(name)}`);
      stream.onmessage = (e) => {
        const chunk = JSON.parse(e.data);
        view.append(typeof chunk.data === "string" ? chunk.data : `${JSON.stringify(chunk.data)}\n`);
        view.scrollTop = view.scrollHeight;
      };
      stream.addEventListener("attempt", (e) => {
        const info = JSON.parse(e.data);
        view.append(`\n--- attempt ${info.attempt} of ${info.writer} ---\n`);
      });
      stream.addEventListener("end", (e) => {
        const info = JSON.parse(e.data);
        view.append(`\n--- end (${info.reason}) ---\n`);
        view.dataset.ended = info.reason;
        stream.close();
        stream = null;
      });
    });
  }

  // -- actions ---------------------------------------------------------------------------
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.action");
    if (!form) return;
    event.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const response = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Runwright-CSRF": csrf, Accept: "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)),
    });
    const body = await response.json();
    if (!response.ok) { toast(body.error || `HTTP ${response.status}`, true); return; }
    toast(body.message);
    if (form.action.endsWith("/restart") && body.run) location.href = `${base}/runs/${encodeURIComponent(body.run)}`;
  });
})();
