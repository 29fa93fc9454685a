// Run page: metadata header, then the Memory and CPU views as tabs.

import { ApiError, getCollapsed, getFunctions, getRun, type FunctionRow, type RunDetail } from "./api.ts";
import { el, onWidth, statusBadge } from "./dom.ts";
import { buildTree, FlameGraph, parseCollapsed, type FrameNode } from "./flame.ts";
import { ago, absoluteTime, count, duration, hz, mib, percent } from "./format.ts";
import { memoryView } from "./memory.ts";

type Tab = "memory" | "cpu";

export async function renderRun(root: HTMLElement, id: string): Promise<void> {
  root.replaceChildren(el("p", { class: "muted loading" }, "Loading run…"));
  let run: RunDetail;
  try {
    run = await getRun(id);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 404 ? "No such run." : `Could not load the run: ${(e as Error).message}`;
    root.replaceChildren(el("div", { class: "error", "data-testid": "error" }, msg), el("p", {}, el("a", { href: "/" }, "← All runs")));
    return;
  }
  document.title = `${run.function || run.id} · ${run.project} · vmprof-viewer`;

  const hasMemory = run.memory !== false && run.peak_rss_kb > 0;
  const views: Record<Tab, { panel: HTMLElement; init?: () => void }> = {
    memory: { panel: el("div", { class: "tab-panel", role: "tabpanel", "data-testid": "memory-panel" }) },
    cpu: { panel: el("div", { class: "tab-panel", role: "tabpanel", "data-testid": "cpu-panel" }) },
  };
  views.memory.init = () => {
    if (hasMemory) views.memory.panel.append(memoryView(run.id).element);
    else
      views.memory.panel.append(
        el(
          "section",
          { class: "panel empty" },
          el("span", { "data-testid": "peak-rss", "data-kib": 0 }, "Memory (RSS) was not recorded for this run."),
        ),
      );
  };
  views.cpu.init = () => cpuView(views.cpu.panel, run);

  const tabs = (["memory", "cpu"] as Tab[]).map((t) =>
    el(
      "button",
      { type: "button", role: "tab", class: "tab", "data-tab": t, "data-testid": `tab-${t}` },
      t === "memory" ? "Memory" : "CPU",
    ),
  );
  const show = (t: Tab) => {
    for (const b of tabs) b.setAttribute("aria-selected", String(b.dataset.tab === t));
    for (const [k, v] of Object.entries(views) as [Tab, (typeof views)[Tab]][]) {
      v.panel.hidden = k !== t;
      // Views build lazily: a canvas must be visible to know its width.
      if (k === t && v.init) {
        const init = v.init;
        v.init = undefined;
        init();
      }
    }
    if (location.hash !== `#${t}`) history.replaceState(null, "", `#${t}`);
  };
  for (const b of tabs) b.addEventListener("click", () => show(b.dataset.tab as Tab));

  root.replaceChildren(
    header(run),
    el("nav", { class: "tabs", role: "tablist" }, ...tabs),
    views.memory.panel,
    views.cpu.panel,
  );
  const fromHash = location.hash.slice(1);
  show(fromHash === "cpu" || fromHash === "memory" ? fromHash : hasMemory ? "memory" : "cpu");
}

function header(run: RunDetail): HTMLElement {
  const item = (label: string, field: string, value: string | number, text: string, title?: string) =>
    el(
      "div",
      { class: "meta-item" },
      el("dt", {}, label),
      el("dd", { "data-field": field, "data-value": value, title }, text),
    );
  const items = [
    item("Samples", "samples", run.samples, count(run.samples)),
    item("Peak RSS", "peak_rss_kb", run.peak_rss_kb, run.peak_rss_kb ? mib(run.peak_rss_kb) : "not recorded"),
    item("Duration", "duration_s", run.duration_s, duration(run.duration_s)),
    item("Rate", "rate_hz", run.rate_hz, hz(run.rate_hz), `asked for one sample every ${run.period_s} s`),
    item("Started", "start_time", run.start_time, ago(run.start_time), absoluteTime(run.start_time)),
    item("Host", "host", run.host, run.pid ? `${run.host} · pid ${run.pid}` : run.host),
  ];
  if (run.threads !== undefined) items.push(item("Threads", "threads", run.threads, count(run.threads)));
  return el(
    "header",
    { class: "run-header" },
    el("div", { class: "crumbs" }, el("a", { href: "/" }, "Runs"), " / ", el("span", { "data-testid": "run-project" }, run.project)),
    el(
      "div",
      { class: "title-row" },
      el("h1", { "data-testid": "run-function" }, run.function || "(unnamed)"),
      statusBadge(run.status),
    ),
    run.error ? el("div", { class: "error", "data-testid": "run-error" }, run.error) : null,
    el("dl", { class: "meta", "data-testid": "run-meta" }, ...items),
  );
}

function cpuView(panel: HTMLElement, run: RunDetail): void {
  const status = el("p", { class: "muted loading" }, "Loading stacks…");
  panel.append(status);
  Promise.all([getCollapsed(run.id), getFunctions(run.id)])
    .then(([text, fns]) => {
      status.remove();
      const tree = buildTree(parseCollapsed(text));
      panel.append(flamePanel(tree), functionTable(fns.functions, fns.samples || tree.total));
    })
    .catch((e: Error) => {
      status.className = "error";
      status.dataset.testid = "error";
      status.textContent = `Could not load the CPU profile: ${e.message}`;
    });
}

// The flame graph's search box is also driven by the function table.
let setFlameSearch: (q: string) => void = () => {};

function flamePanel(tree: FrameNode): HTMLElement {
  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Highlight frames…",
    "aria-label": "Highlight frames matching",
    "data-testid": "flame-search",
  });
  const found = el("span", { class: "muted", "data-testid": "flame-search-result" });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "flame-reset", hidden: true }, "Reset zoom");
  const tooltip = el("div", { class: "tooltip", "data-testid": "flame-tooltip", role: "tooltip", hidden: true });
  const topList = el("ul", { class: "visually-hidden", "data-testid": "flame-top-frames" });
  const drawnList = el("ul", { class: "visually-hidden", "data-testid": "flame-drawn" });
  const zoomInfo = el("span", { class: "muted", "data-testid": "flame-zoom-info" });

  const flame = new FlameGraph(tree, tooltip, topList, drawnList, (focus, matched) => {
    reset.hidden = !focus.parent;
    zoomInfo.textContent = focus.parent ? `Zoomed: ${count(focus.total)} samples (${percent(focus.total, tree.total)})` : "";
    found.textContent =
      matched === null ? "" : `${count(matched)} of ${count(tree.total)} samples match (${percent(matched, tree.total)})`;
    found.dataset.value = matched === null ? "" : String(matched);
  });
  const box = el("div", { class: "flame-box" }, flame.canvas);
  if (tree.total === 0) box.replaceChildren(el("p", { class: "muted" }, "No stack samples in this run."));

  search.addEventListener("input", () => flame.setSearch(search.value));
  search.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && search.value) {
      search.value = "";
      flame.setSearch("");
      e.stopPropagation();
    }
  });
  setFlameSearch = (q) => {
    search.value = q;
    flame.setSearch(q);
    search.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };
  reset.addEventListener("click", () => flame.reset());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && box.isConnected && box.offsetParent !== null && flame.zoomed) flame.reset();
  });
  onWidth(box, (w) => flame.resize(w));

  return el(
    "section",
    { class: "panel", "data-testid": "cpu-view" },
    el("div", { class: "toolbar" }, search, found, el("span", { class: "spacer" }), zoomInfo, reset),
    box,
    el(
      "div",
      { class: "legend" },
      el("span", { class: "swatch swatch-heat" }),
      "colour: share of samples spent in the function itself (cool → hot)",
      el("span", { class: "hint" }, "Click a frame to zoom · click the top bar or press Esc to reset"),
    ),
    topList,
    drawnList,
    tooltip,
  );
}

type SortKey = "name" | "file" | "self" | "total";

function functionTable(rows: FunctionRow[], samples: number): HTMLElement {
  let key: SortKey = "total";
  let desc = true;
  const cols: { key: SortKey; label: string; cls?: string }[] = [
    { key: "name", label: "Function" },
    { key: "file", label: "Location" },
    { key: "self", label: "Self %", cls: "num" },
    { key: "total", label: "Total %", cls: "num" },
    { key: "self", label: "Self", cls: "num" },
    { key: "total", label: "Total", cls: "num" },
  ];
  const ths = cols.map((c) =>
    el("th", { class: c.cls, "data-sort": c.key, scope: "col" }, el("button", { type: "button", class: "sort" }, c.label)),
  );
  // Two columns share each numeric key; the arrow goes on the one clicked.
  let active = ths[3];
  const tbody = el("tbody");
  const MAX_ROWS = 2000;

  const render = () => {
    const dir = desc ? -1 : 1;
    const sorted = [...rows].sort((a, b) => {
      const va = key === "file" ? `${a.file}:${String(a.line).padStart(9, "0")}` : a[key];
      const vb = key === "file" ? `${b.file}:${String(b.line).padStart(9, "0")}` : b[key];
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return b.total - a.total;
    });
    for (const th of ths) {
      th.setAttribute("aria-sort", th === active ? (desc ? "descending" : "ascending") : "none");
    }
    tbody.replaceChildren(
      ...sorted.slice(0, MAX_ROWS).map((f) => {
        const tr = el(
          "tr",
          {
            "data-testid": "function-row",
            "data-name": f.name,
            "data-file": f.file,
            "data-line": f.line,
            "data-self": f.self,
            "data-total": f.total,
            title: "Highlight in the flame graph",
          },
          el("td", { class: "fn" }, f.name),
          // dir=ltr isolates the path from the cell's rtl (which only moves the ellipsis to the left).
          el("td", { class: "loc", title: loc(f) }, el("span", { dir: "ltr" }, loc(f))),
          pctCell(f.self, samples, "self-pct"),
          pctCell(f.total, samples, "total-pct"),
          el("td", { class: "num", "data-col": "self" }, count(f.self)),
          el("td", { class: "num", "data-col": "total" }, count(f.total)),
        );
        tr.addEventListener("click", () => setFlameSearch(f.name));
        return tr;
      }),
    );
  };
  ths.forEach((th) =>
    th.addEventListener("click", () => {
      active = th;
      const k = th.dataset.sort as SortKey;
      if (k === key) desc = !desc;
      else {
        key = k;
        // Numbers read best biggest first, names A→Z.
        desc = k === "self" || k === "total";
      }
      render();
    }),
  );
  render();
  return el(
    "section",
    { class: "panel" },
    el("h2", {}, "Functions"),
    el(
      "div",
      { class: "table-wrap" },
      el("table", { class: "functions", "data-testid": "function-table" }, el("thead", {}, el("tr", {}, ...ths)), tbody),
    ),
    rows.length > MAX_ROWS ? el("p", { class: "muted" }, `Showing ${MAX_ROWS} of ${count(rows.length)} functions.`) : null,
  );
}

function loc(f: FunctionRow): string {
  return f.file ? `${f.file}:${f.line}` : "–";
}

function pctCell(v: number, whole: number, col: string): HTMLElement {
  const td = el("td", { class: "num pct", "data-col": col }, percent(v, whole));
  const share = whole > 0 ? Math.min(100, (100 * v) / whole) : 0;
  td.style.setProperty("--share", `${share.toFixed(2)}%`);
  return td;
}
