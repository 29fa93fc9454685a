// CPU view: flame graph of the run (or of a time range), search, sandwich view
// of one function, and the sortable function table.

import { ApiError, getCollapsed, getFunctions, getTree, type FunctionRow, type Functions, type RunDetail, type Window } from "./api.ts";
import { el } from "./dom.ts";
import { FlameGraph, flameLegend, heatColour } from "./flame.ts";
import { count, percent, splitFrame } from "./format.ts";
import { barCell, fnCell, locCell, locKey, numCell, sortableTable, type SortableTable } from "./table.ts";
import {
  buildTree,
  frameLabel,
  fromApiTree,
  parseCollapsed,
  sandwich,
  selfByFrame,
  unnamedShare,
  type FrameNode,
} from "./tree.ts";

export interface View {
  element: HTMLElement;
  /** Fetch again (a live run grew) keeping zoom, search and sort. */
  refresh(): Promise<void>;
  destroy(): void;
}

export interface CpuData {
  root: FrameNode;
  samples: number;
  truncated: boolean;
  source: "tree" | "collapsed";
  functions: FunctionRow[];
}

interface TreePart {
  root: FrameNode;
  samples: number;
  truncated: boolean;
  source: CpuData["source"];
}

/** The call tree from /tree; from /collapsed when the server is older (404) and no range is asked for. */
async function loadTree(id: string, range: Window | null): Promise<TreePart> {
  try {
    const t = await getTree(id, range);
    const root = fromApiTree(
      t.root,
      (a) => a.total as number,
      (a) => a.self as number,
    );
    return { root, truncated: Boolean(t.truncated), samples: t.samples ?? root.total, source: "tree" };
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404) || range) throw e;
    const root = buildTree(parseCollapsed(await getCollapsed(id)));
    return { root, truncated: false, samples: root.total, source: "collapsed" };
  }
}

/** Both requests at once; the tree and the function list arrive separately. */
function startCpu(id: string, range: Window | null): { tree: Promise<TreePart>; functions: Promise<Functions> } {
  const tree = loadTree(id, range);
  const functions = getFunctions(id, range);
  // Either may be awaited late (or never, if the other failed): no unhandled rejections.
  tree.catch(() => {});
  functions.catch(() => {});
  return { tree, functions };
}

function join(t: TreePart, f: Functions): CpuData {
  return { ...t, samples: f.samples || t.samples, functions: f.functions };
}

export async function loadCpu(id: string, range: Window | null): Promise<CpuData> {
  const p = startCpu(id, range);
  return join(await p.tree, await p.functions);
}

let prefetched: { key: string; p: ReturnType<typeof startCpu> } | null = null;
const keyOf = (id: string, range: Window | null) => `${id} ${range ? `${range.from} ${range.to}` : ""}`;

/**
 * Start fetching a run's CPU data before the run itself has arrived (the page
 * opens on #cpu): the first cpuView of that run and range takes it over.
 */
export function prefetchCpu(id: string, range: Window | null): void {
  prefetched = { key: keyOf(id, range), p: startCpu(id, range) };
}

function takePrefetched(id: string, range: Window | null): ReturnType<typeof startCpu> | null {
  const p = prefetched && prefetched.key === keyOf(id, range) ? prefetched.p : null;
  prefetched = null;
  return p;
}

export function cpuView(run: RunDetail, range: Window | null): View {
  const element = el("div", { class: "cpu" });
  const status = el("p", { class: "muted loading" }, range ? "Loading the stacks of this range…" : "Loading stacks…");
  element.append(status);
  let ui: ReturnType<typeof build> | null = null;
  let busy = false;
  let gone = false;

  const fail = (e: Error) => {
    status.className = "error";
    status.dataset.testid = "error";
    status.textContent = `Could not load the CPU profile: ${e.message}`;
    if (!status.isConnected) element.prepend(status);
  };

  // The flame graph is drawn as soon as the tree is here; the function table
  // (and the exact heat colours) follow when /functions answers, in a later
  // task so that the first drawing never waits for a long table's layout.
  const p = takePrefetched(run.id, range) ?? startCpu(run.id, range);
  p.tree
    .then((t) => {
      if (gone) return;
      status.remove();
      ui = build(t);
      element.append(...ui.parts);
      ui.drawNow();
      return p.functions.then(
        (f) =>
          new Promise<void>((done) =>
            window.setTimeout(() => {
              if (!gone) ui?.setFunctions(f);
              done();
            }, 0),
          ),
      );
    })
    .catch(fail);

  return {
    element,
    async refresh() {
      if (!ui || busy) return;
      busy = true;
      try {
        ui.update(await loadCpu(run.id, range));
      } catch {
        // A failed refresh keeps what is shown; the next poll tries again.
      } finally {
        busy = false;
      }
    },
    destroy() {
      gone = true;
      ui?.destroy();
    },
  };
}

/**
 * Self samples per frame label: from the function list (exact even when the
 * server cut small branches off the tree), else from the tree.
 */
function heatOf(d: CpuData): Map<string, number> {
  if (!d.functions.length) return selfByFrame(d.root);
  return new Map(d.functions.map((f) => [frameLabel(f.name, f.file, f.line), f.self]));
}

function build(t: TreePart) {
  const d: CpuData = { ...t, functions: [] };
  let data = d;
  let heat = heatOf(d);
  let maxHeat = Math.max(1, ...heat.values());
  const colour = (n: FrameNode) => heatColour((heat.get(n.name) ?? 0) / maxHeat);

  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Highlight frames…",
    "aria-label": "Highlight frames matching",
    "data-testid": "flame-search",
  });
  const found = el("span", { class: "muted", "data-testid": "flame-search-result", "aria-live": "polite" });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "flame-reset", hidden: true }, "Reset zoom");
  const openSandwich = el("button", { type: "button", class: "btn", "data-testid": "flame-sandwich", hidden: true });
  const zoomInfo = el("span", { class: "muted", "data-testid": "flame-zoom-info" });
  const unnamed = el(
    "p",
    { class: "muted note", "data-testid": "flame-unnamed" },
    "Most frames have no name yet: vmprof writes the names of the functions when the profile ends, so they show as addresses until then.",
  );
  const showUnnamed = (fns: FunctionRow[]) => {
    unnamed.hidden = unnamedShare(fns.map((f) => f.name)) < 0.5;
  };
  showUnnamed(d.functions);
  const truncatedNote = el(
    "p",
    { class: "muted note", "data-testid": "flame-truncated", hidden: !d.truncated },
    "The server sent the largest call paths only: smaller ones are folded into their callers.",
  );

  const flame = new FlameGraph(d.root, {
    id: "flame",
    label: "CPU flame graph",
    colour,
    onChange: (focus, matched) => {
      const total = data.root.total;
      reset.hidden = !focus.parent;
      openSandwich.hidden = !focus.parent;
      openSandwich.textContent = focus.parent ? `Sandwich: ${splitFrame(focus.name).fn}` : "";
      zoomInfo.textContent = focus.parent ? `Zoomed: ${count(focus.total)} samples (${percent(focus.total, total)})` : "";
      found.textContent =
        matched === null ? "" : `${count(matched)} of ${count(total)} samples match (${percent(matched, total)} of the total)`;
      found.dataset.value = matched === null ? "" : String(matched);
      found.dataset.share = matched === null || total <= 0 ? "" : ((100 * matched) / total).toFixed(2);
    },
  });
  flame.canvas.addEventListener("click", (e) => {
    if (e.shiftKey) showSandwich(flame.focused.name);
  });
  flame.canvas.addEventListener("keydown", (e) => {
    if (e.key === "s" || e.key === "S") {
      const t = flame.tooltip.dataset.frame;
      if (t && t !== flame.tree.name) showSandwich(t);
    }
  });
  if (d.root.total === 0) flame.element.prepend(el("p", { class: "muted" }, "No stack samples in this range."));

  search.addEventListener("input", () => flame.setSearch(search.value));
  search.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && search.value) {
      search.value = "";
      flame.setSearch("");
      e.stopPropagation();
    }
  });
  const highlight = (q: string) => {
    search.value = q;
    flame.setSearch(q);
    search.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };
  reset.addEventListener("click", () => flame.reset());
  openSandwich.addEventListener("click", () => showSandwich(flame.focused.name));
  const onEsc = (e: KeyboardEvent) => {
    if (e.key !== "Escape" || !flamePanel.isConnected || flamePanel.offsetParent === null) return;
    if (!sandwichPanel.hidden) closeSandwich();
    else if (flame.zoomed) flame.reset();
  };
  document.addEventListener("keydown", onEsc);

  const flamePanel = el(
    "section",
    { class: "panel", "data-testid": "cpu-view", "data-source": d.source, "aria-label": "CPU flame graph" },
    el("div", { class: "toolbar" }, search, found, el("span", { class: "spacer" }), zoomInfo, openSandwich, reset),
    flame.element,
    unnamed,
    truncatedNote,
    flameLegend(
      "swatch-heat",
      "colour: share of samples spent in the function itself (cool → hot)",
      el("span", { class: "hint" }, "Click: zoom · Shift+click or S: sandwich · Esc: reset"),
    ),
  );

  // ---- sandwich
  const sandwichPanel = el("section", {
    class: "panel sandwich",
    "data-testid": "sandwich",
    hidden: true,
    "aria-label": "Sandwich view",
  });
  let sw: { name: string; callers: FlameGraph; callees: FlameGraph } | null = null;

  function showSandwich(name: string): void {
    const s = sandwich(data.root, name);
    const all = () => data.root.total;
    const f = splitFrame(name);
    const close = el("button", { type: "button", class: "btn", "data-testid": "sandwich-close" }, "Close");
    close.addEventListener("click", closeSandwich);
    sw?.callers.destroy();
    sw?.callees.destroy();
    const callers = new FlameGraph(s.callers, { id: "callers", label: `Callers of ${f.fn}`, inverted: true, colour, shareOf: all });
    const callees = new FlameGraph(s.callees, { id: "callees", label: `Callees of ${f.fn}`, colour, shareOf: all });
    sw = { name, callers, callees };
    sandwichPanel.dataset.frame = name;
    sandwichPanel.dataset.total = String(s.total);
    sandwichPanel.dataset.self = String(s.self);
    sandwichPanel.replaceChildren(
      el(
        "div",
        { class: "toolbar" },
        el("h2", { "data-testid": "sandwich-title" }, "Sandwich: ", el("code", {}, f.fn)),
        f.file ? el("span", { class: "muted loc-inline" }, `${f.file}:${f.line}`) : null,
        el("span", { class: "spacer" }),
        el(
          "span",
          { class: "muted", "data-testid": "sandwich-stats" },
          `on the stack in ${count(s.total)} samples (${percent(s.total, all())}) · self ${count(s.self)} (${percent(s.self, all())})`,
        ),
        close,
      ),
      el("div", { class: "sandwich-label" }, "Callers ↑ (who calls it; outermost callers at the top)"),
      callers.element,
      el("div", { class: "sandwich-label" }, "Callees ↓ (what it calls, all its calls merged)"),
      callees.element,
    );
    sandwichPanel.hidden = false;
    sandwichPanel.scrollIntoView({ block: "start", behavior: "smooth" });
    callers.canvas.focus({ preventScroll: true });
  }

  function closeSandwich(): void {
    sw?.callers.destroy();
    sw?.callees.destroy();
    sw = null;
    sandwichPanel.hidden = true;
    sandwichPanel.replaceChildren();
    delete sandwichPanel.dataset.frame;
    flame.canvas.focus({ preventScroll: true });
  }

  // ---- function table (once /functions has answered)
  const tableStatus = el("p", { class: "muted loading" }, "Loading the functions…");
  const fnPanel = el(
    "section",
    { class: "panel", "aria-label": "Functions" },
    el(
      "div",
      { class: "toolbar" },
      el("h2", {}, "Functions"),
      el("span", { class: "hint" }, "Click or Enter: highlight in the graph · S or ⇅: sandwich view"),
    ),
    tableStatus,
  );
  let table: ReturnType<typeof functionTable> | null = null;
  const recolour = (nd: CpuData) => {
    heat = heatOf(nd);
    maxHeat = Math.max(1, ...heat.values());
  };

  return {
    parts: [flamePanel, sandwichPanel, fnPanel],
    /** Lay out and paint the graph now, in this task (its panel is in the page). */
    drawNow() {
      flame.fitWidth();
    },
    setFunctions(f: Functions) {
      data = { ...data, samples: f.samples || data.samples, functions: f.functions };
      recolour(data);
      showUnnamed(f.functions);
      flame.setSearch(search.value); // repaints with the exact colours
      table = functionTable(f.functions, data.samples, highlight, (r) => showSandwich(frameLabel(r.name, r.file, r.line)));
      tableStatus.replaceWith(table.element);
    },
    update(nd: CpuData) {
      data = nd;
      recolour(nd);
      truncatedNote.hidden = !nd.truncated;
      showUnnamed(nd.functions);
      flame.setTree(nd.root);
      flame.setSearch(search.value);
      if (table) table.setData(nd.functions, nd.samples);
      else {
        table = functionTable(nd.functions, nd.samples, highlight, (r) => showSandwich(frameLabel(r.name, r.file, r.line)));
        tableStatus.replaceWith(table.element);
      }
      if (sw) {
        const s = sandwich(nd.root, sw.name);
        sw.callers.setTree(s.callers);
        sw.callees.setTree(s.callees);
        sandwichPanel.dataset.total = String(s.total);
        sandwichPanel.dataset.self = String(s.self);
      }
    },
    destroy() {
      document.removeEventListener("keydown", onEsc);
      flame.destroy();
      sw?.callers.destroy();
      sw?.callees.destroy();
    },
  };
}

function functionTable(
  rows: FunctionRow[],
  samples: number,
  onPick: (name: string) => void,
  onSandwich: (r: FunctionRow) => void,
): SortableTable<FunctionRow> & { setData(rows: FunctionRow[], samples: number): void } {
  const st = { samples };
  const pct = (v: number) => (st.samples > 0 ? (100 * v) / st.samples : 0);
  const t = sortableTable<FunctionRow>({
    testid: "function-table",
    caption: "Functions by CPU samples",
    rows,
    initial: 3,
    tiebreak: (a, b) => b.total - a.total,
    columns: [
      { sort: "name", label: "Function", value: (r) => r.name, desc: false, cell: (r) => fnCell(r.name) },
      { sort: "file", label: "Location", value: locKey, desc: false, cell: (r) => locCell(r.file, r.line) },
      {
        sort: "self",
        label: "Self %",
        cls: "num",
        value: (r) => r.self,
        cell: (r) => barCell(percent(r.self, st.samples), pct(r.self), { "data-col": "self-pct" }),
      },
      {
        sort: "total",
        label: "Total %",
        cls: "num",
        value: (r) => r.total,
        cell: (r) => barCell(percent(r.total, st.samples), pct(r.total), { "data-col": "total-pct" }),
      },
      { sort: "self", label: "Self", cls: "num", value: (r) => r.self, cell: (r) => numCell(count(r.self), { "data-col": "self" }) },
      { sort: "total", label: "Total", cls: "num", value: (r) => r.total, cell: (r) => numCell(count(r.total), { "data-col": "total" }) },
      {
        label: "",
        cls: "act",
        cell: () =>
          el(
            "td",
            { class: "act" },
            el(
              "button",
              { type: "button", class: "btn btn-small", tabindex: -1, "data-testid": "function-sandwich", title: "Sandwich view: callers and callees" },
              "⇅",
            ),
          ),
      },
    ],
    rowAttrs: (f) => ({
      "data-testid": "function-row",
      "data-name": f.name,
      "data-file": f.file,
      "data-line": f.line,
      "data-self": f.self,
      "data-total": f.total,
      tabindex: 0,
      title: "Highlight in the flame graph",
    }),
    onRow: (f, tr) => {
      tr.addEventListener("click", (e) => {
        if ((e.target as Element).closest('[data-testid="function-sandwich"]')) onSandwich(f);
        else onPick(f.name);
      });
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter") onPick(f.name);
        else if (e.key === "s" || e.key === "S") onSandwich(f);
        else return;
        e.preventDefault();
      });
    },
  });
  return {
    ...t,
    setData(r: FunctionRow[], n: number) {
      st.samples = n;
      t.setRows(r);
    },
  };
}
