// report.html's only script. Every text from the results goes into the page as a text node
// (textContent / createTextNode): never innerHTML, never an attribute that is a URL or a handler.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const S = D.strings;
  const ARROW = { 1: " ↑", "-1": " ↓", 0: "" };

  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    // As the Markdown and terminal tables (leaderboard.format_number): 0.412, 1.23e-05.
    if (v !== 0 && !(Math.abs(v) >= 1e-3 && Math.abs(v) < 1e6)) return v.toExponential(2).replace(/e([+-])(\d)$/, "e$10$2");
    return v.toFixed(3);
  }

  function cellOf(model, method, benchmark) {
    return D.cells.find((c) => c.model === model && c.method === method && c.benchmark === benchmark);
  }

  // --- leaderboard ------------------------------------------------------------------------------
  const rowFilter = document.getElementById("row-filter");
  const colFilter = document.getElementById("col-filter");
  const renderers = [];

  function provenance(cell) {
    const dl = el("dl", "prov");
    if (!cell) return el("p", "muted", "no provenance recorded");
    dl.appendChild(el("dt", null, "result file"));
    dl.appendChild(el("dd", null, cell.path));
    for (const [k, v] of Object.entries(cell.prov)) {
      dl.appendChild(el("dt", null, k));
      dl.appendChild(el("dd", null, v === null ? "—" : v));
    }
    return dl;
  }

  function badge(role) {
    return role ? el("span", "badge " + role, role) : null;
  }

  function buildTable(t, host) {
    const state = { col: t.columns.findIndex((c) => c.key === t.sort || t.sort.endsWith("/" + c.key)), desc: null };
    if (state.col < 0) state.col = 0;
    state.desc = t.columns[state.col].dir !== -1;
    const open = new Set();
    const wrap = el("div", "table-wrap");
    const table = el("table", "leaderboard");
    table.dataset.kind = t.kind;
    wrap.appendChild(table);
    host.appendChild(wrap);
    host.appendChild(el("div", "legend", ...t.legend.map((l) => el("div", null, l))));

    function sameN(i) {
      const ns = new Set(t.rows.filter((r) => r.cells[i][0] !== null).map((r) => r.cells[i][3]));
      return ns.size === 1 ? [...ns][0] : null;
    }

    function render() {
      while (table.firstChild) table.removeChild(table.firstChild);
      const cf = colFilter.value.trim().toLowerCase();
      const rf = rowFilter.value.trim().toLowerCase();
      const cols = t.columns.map((c, i) => i).filter((i) => !cf || i === state.col || t.columns[i].key.toLowerCase().includes(cf));
      const head = el("tr");
      head.appendChild(el("th", null, "model"));
      head.appendChild(el("th", null, "method"));
      for (const i of cols) {
        const c = t.columns[i];
        const n = sameN(i);
        const th = el("th", "metric", c.key + ARROW[c.dir] + (n !== null ? " (n=" + n + ")" : ""));
        th.title = "sort by " + c.key;
        th.dataset.col = String(i);
        if (i === state.col) th.classList.add(state.desc ? "sorted-desc" : "sorted-asc");
        th.addEventListener("click", () => {
          if (state.col === i) state.desc = !state.desc;
          else { state.col = i; state.desc = c.dir !== -1; }
          render();
        });
        head.appendChild(th);
      }
      table.appendChild(el("thead", null, head));
      const body = el("tbody");
      const rows = t.rows.map((r, k) => [r, k]).filter(([r]) => !rf || (r.model + " / " + r.method).toLowerCase().includes(rf));
      rows.sort(([a, ka], [b, kb]) => {
        const va = a.cells[state.col][0], vb = b.cells[state.col][0];
        if (va === null && vb === null) return ka - kb;
        if (va === null) return 1;
        if (vb === null) return -1;
        return (state.desc ? vb - va : va - vb) || ka - kb;
      });
      for (const [r, k] of rows) {
        const tr = el("tr", "row" + (r.role ? " role-" + r.role : ""));
        const btn = el("button", "prov", "i");
        btn.title = "provenance";
        btn.type = "button";
        btn.addEventListener("click", () => { open.has(k) ? open.delete(k) : open.add(k); render(); });
        tr.appendChild(el("td", "model", btn, r.model, badge(r.role)));
        tr.appendChild(el("td", "method", r.method));
        for (const i of cols) {
          const [v, lo, hi, n] = r.cells[i];
          const td = el("td", "num", el("span", "v", fmt(v)));
          if (v !== null && lo !== null && hi !== null) td.appendChild(el("span", "ci", " [" + fmt(lo) + ", " + fmt(hi) + "]"));
          if (v !== null && sameN(i) === null && n !== null) td.appendChild(el("span", "n", " (n=" + n + ")"));
          td.dataset.value = v === null ? "" : String(v);
          tr.appendChild(td);
        }
        body.appendChild(tr);
        if (open.has(k)) {
          const td = el("td", null, provenance(cellOf(r.model, r.method, r.benchmark)));
          td.colSpan = cols.length + 2;
          body.appendChild(el("tr", "prov-row", td));
        }
      }
      table.appendChild(body);
    }
    renderers.push(render);
    render();
  }

  const tablesHost = document.getElementById("tables");
  for (const t of D.tables) {
    if (t.kind === "all") {
      const det = el("details", "all-metrics", el("summary", null, t.title + " (" + t.columns.length + " metrics)"));
      tablesHost.appendChild(det);
      buildTable(t, det);
    } else {
      const sec = el("div", "view", el("h3", null, t.title));
      tablesHost.appendChild(sec);
      buildTable(t, sec);
    }
  }
  rowFilter.addEventListener("input", () => renderers.forEach((r) => r()));
  colFilter.addEventListener("input", () => renderers.forEach((r) => r()));

  // --- samples ----------------------------------------------------------------------------------
  const cellSel = document.getElementById("sample-cell");
  const cmpSel = document.getElementById("sample-compare");
  const search = document.getElementById("sample-search");
  const list = document.getElementById("sample-list");
  const detail = document.getElementById("sample-detail");
  const count = document.getElementById("sample-count");
  const LIMIT = 200;
  let chosen = null;

  const withSamples = D.cells.map((c, i) => [c, i]).filter(([c]) => c.samples !== undefined);
  const nameOf = (c) => c.model + " / " + c.method + " / " + c.benchmark;

  function decode(c) {
    if (!c) return null;
    const raw = D.samples[c.benchmark].cells[String(c.samples)];
    const col = ([runs, vals], str) => {  // runs: [first item index, count], in the order of vals
      const idx = runs.flatMap(([first, count]) => Array.from({ length: count }, (_, j) => first + j));
      return new Map(idx.map((i, k) => [i, str ? S[vals[k]] : vals[k]]));
    };
    const values = {}, notes = {};
    for (const [m, p] of Object.entries(raw.values)) values[m] = col(p, false);
    for (const [m, p] of Object.entries(raw.notes)) notes[m] = col(p, true);
    return { cell: c, gen: col(raw.gen, true), values, notes };
  }

  for (const [c, i] of withSamples) {
    const o = el("option", null, nameOf(c));
    o.value = String(i);
    cellSel.appendChild(o);
  }
  const first = withSamples.find(([c]) => c.method !== "none" && !c.role) || withSamples[0];
  if (first) cellSel.value = String(first[1]);

  function fillCompare() {
    while (cmpSel.firstChild) cmpSel.removeChild(cmpSel.firstChild);
    const cur = D.cells[Number(cellSel.value)];
    const none = el("option", null, "(nothing)");
    none.value = "";
    cmpSel.appendChild(none);
    if (!cur) return;
    const peers = withSamples.filter(([c, i]) => c.benchmark === cur.benchmark && i !== Number(cellSel.value));
    for (const [c, i] of peers) {
      const o = el("option", null, nameOf(c) + (c.role ? " (" + c.role + ")" : ""));
      o.value = String(i);
      cmpSel.appendChild(o);
    }
    const original = peers.find(([c]) => c.model === cur.model && c.method === "none")
      || peers.find(([c]) => c.role === "reference") || peers[0];
    cmpSel.value = original ? String(original[1]) : "";
  }

  function notesText(d, i) {
    if (!d) return "";
    return Object.entries(d.notes).filter(([, m]) => m.has(i)).map(([k, m]) => k + ": " + m.get(i)).join("\n");
  }

  function showDetail(items, i, a, b) {
    const [split, id, prompt, ref] = items[i].map((k) => (k < 0 ? "" : S[k]));
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    detail.appendChild(el("h3", null, "item ", el("span", "item-id", id), el("span", "muted", " (" + split + ")")));
    detail.appendChild(el("div", null, el("b", null, "prompt"), el("pre", "prompt", prompt)));
    detail.appendChild(el("div", null, el("b", null, "reference answer"), el("pre", "reference", ref)));
    const side = el("div", "side");
    for (const [d, cls] of [[a, "this"], [b, "beside"]]) {
      if (!d) continue;
      side.appendChild(el("div", cls, el("b", null, nameOf(d.cell)),
        el("pre", "generation", d.gen.has(i) ? d.gen.get(i) : "(no generation)"),
        el("pre", "verdicts", notesText(d, i) || "(no verdicts)")));
    }
    detail.appendChild(side);
    const metrics = [...new Set([a, b].filter(Boolean).flatMap((d) => Object.keys(d.values).filter((m) => d.values[m].has(i))))].sort();
    const vt = el("table", "values");
    vt.appendChild(el("tr", null, el("th", null, "metric (per sample)"), el("th", null, nameOf(a.cell)), b ? el("th", null, nameOf(b.cell)) : null));
    for (const m of metrics) {
      const v = (d) => (d && d.values[m] && d.values[m].has(i) ? fmt(d.values[m].get(i)) : "—");
      vt.appendChild(el("tr", null, el("td", null, m), el("td", "num", v(a)), b ? el("td", "num", v(b)) : null));
    }
    detail.appendChild(vt);
    detail.hidden = false;
  }

  function renderSamples() {
    while (list.firstChild) list.removeChild(list.firstChild);
    const cur = D.cells[Number(cellSel.value)];
    if (!cur) { count.textContent = "no samples in these results"; return; }
    const a = decode(cur);
    const b = cmpSel.value === "" ? null : decode(D.cells[Number(cmpSel.value)]);
    const items = D.samples[cur.benchmark].items;
    const q = search.value.trim().toLowerCase();
    const table = el("table");
    table.appendChild(el("tr", null, el("th", null, "split / id"), el("th", null, "prompt"), el("th", null, "reference"),
      el("th", null, "generation: " + nameOf(cur)), el("th", null, b ? "generation: " + nameOf(b.cell) : "—"), el("th", null, "verdicts")));
    let matched = 0;
    items.forEach((item, i) => {
      if (!a.gen.has(i) && !Object.values(a.values).some((m) => m.has(i)) && !(b && b.gen.has(i))) return;
      const texts = item.map((k) => (k < 0 ? "" : S[k]));
      const ga = a.gen.has(i) ? a.gen.get(i) : "", gb = b && b.gen.has(i) ? b.gen.get(i) : "";
      const verdicts = notesText(a, i);
      if (q && ![...texts, ga, gb, verdicts].some((s) => s.toLowerCase().includes(q))) return;
      matched += 1;
      if (matched > LIMIT) return;
      const tr = el("tr", "item" + (chosen === i ? " chosen" : ""), el("td", "mono", texts[0] + " / " + texts[1]),
        el("td", null, texts[2]), el("td", null, texts[3]), el("td", "gen-this", ga), el("td", "gen-beside", gb), el("td", null, verdicts));
      tr.dataset.index = String(i);
      tr.addEventListener("click", () => { chosen = i; showDetail(items, i, a, b); renderSamples(); });
      table.appendChild(tr);
    });
    list.appendChild(table);
    const omitted = Object.entries(cur.omitted || {}).map(([split, n]) => n + " more of " + split).join(", ");
    count.textContent = matched + " items" + (matched > LIMIT ? " (first " + LIMIT + " shown; search to narrow)" : "")
      + (omitted ? "; not in this page: " + omitted + " (every sample is in samples.jsonl)" : "");
    if (chosen !== null && items[chosen]) showDetail(items, chosen, a, b);
  }

  cellSel.addEventListener("change", () => { chosen = null; detail.hidden = true; fillCompare(); renderSamples(); });
  cmpSel.addEventListener("change", renderSamples);
  search.addEventListener("input", renderSamples);
  fillCompare();
  renderSamples();
  document.body.dataset.ready = "1";
})();
