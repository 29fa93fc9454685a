// Memory growth by function (/growth): where RSS grew (or was released) in the
// run or a time range, as a flame graph and a table.

import { getGrowth, type Growth, type GrowthRow, type RunDetail, type Window } from "./api.ts";
import type { View } from "./cpu.ts";
import { el } from "./dom.ts";
import { FlameGraph, flameLegend, type TipRow } from "./flame.ts";
import { percent, size } from "./format.ts";
import { barCell, fnCell, highlightOnPick, locCell, locKey, numCell, sortableTable } from "./table.ts";
import { fromApiTree, makeNode, ROOT_NAME, type FrameNode } from "./tree.ts";

type Metric = "grown" | "released";

interface GrowthNode extends FrameNode {
  grown: number;
  released: number;
  selfGrown: number;
  selfReleased: number;
}

function growthTree(g: Growth, m: Metric): GrowthNode {
  const num = (v: unknown) => Number(v) || 0;
  if (!g.root) return makeNode(ROOT_NAME, null) as GrowthNode;
  return fromApiTree<GrowthNode>(
    g.root,
    (a) => num(m === "grown" ? a.grown_kb : a.released_kb),
    (a) => num(m === "grown" ? a.self_grown_kb : a.self_released_kb),
    (a, n) => {
      n.grown = num(a.grown_kb);
      n.released = num(a.released_kb);
      n.selfGrown = num(a.self_grown_kb);
      n.selfReleased = num(a.self_released_kb);
    },
  );
}

export function growthView(run: RunDetail, range: Window | null): View {
  const element = el("div", { class: "growth" });
  const status = el("p", { class: "muted loading" }, "Loading memory growth…");
  element.append(status);
  let update: ((g: Growth) => void) | null = null;
  let destroy = () => {};
  let busy = false;

  getGrowth(run.id, range)
    .then((g) => {
      status.remove();
      const ui = build(g);
      update = ui.update;
      destroy = ui.destroy;
      element.append(...ui.parts);
    })
    .catch((e: Error) => {
      status.className = "error";
      status.dataset.testid = "error";
      status.textContent = `Could not load memory growth: ${e.message}`;
    });

  return {
    element,
    async refresh() {
      if (!update || busy) return;
      busy = true;
      try {
        update(await getGrowth(run.id, range));
      } catch {
        // keep what is shown
      } finally {
        busy = false;
      }
    },
    destroy: () => destroy(),
  };
}

function build(g0: Growth) {
  let g = g0;
  let metric: Metric = "grown";
  const grown = el("span", { class: "peak", "data-testid": "growth-grown" });
  const released = el("span", { class: "peak released", "data-testid": "growth-released" });
  const net = el("span", { class: "muted", "data-testid": "growth-net" });
  const summary = () => {
    grown.textContent = `Grown ${size(g.grown_kb)}`;
    grown.dataset.kib = String(g.grown_kb);
    released.textContent = `Released ${size(g.released_kb)}`;
    released.dataset.kib = String(g.released_kb);
    const d = g.grown_kb - g.released_kb;
    net.textContent = `net ${d >= 0 ? "+" : "\u2212"}${size(Math.abs(d))}`;
  };
  summary();

  const buttons = (["grown", "released"] as Metric[]).map((m) =>
    el(
      "button",
      { type: "button", class: "seg", "data-value": m, "aria-pressed": String(m === metric) },
      m === "grown" ? "Where it grew" : "Where it was released",
    ),
  );
  const seg = el("div", { class: "segmented", role: "group", "aria-label": "Show", "data-testid": "growth-metric" }, ...buttons);

  const all = () => (metric === "grown" ? g.grown_kb : g.released_kb);
  const tipRows = (n: GrowthNode): TipRow[] => [
    { label: "Grown", testid: "growth-tooltip-grown", value: n.grown, text: `${size(n.grown)} (${percent(n.grown, g.grown_kb)}) · self ${size(n.selfGrown)}` },
    {
      label: "Released",
      testid: "growth-tooltip-released",
      value: n.released,
      text: `${size(n.released)} (${percent(n.released, g.released_kb)}) · self ${size(n.selfReleased)}`,
    },
  ];
  const search = el("input", {
    type: "search",
    class: "search search-narrow",
    placeholder: "Highlight frames…",
    "aria-label": "Highlight frames matching",
    "data-testid": "growth-search",
  });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "growth-reset", hidden: true }, "Reset zoom");
  const flame = new FlameGraph<GrowthNode>(growthTree(g, metric), {
    id: "growth",
    onChange: (focus) => {
      reset.hidden = !focus.parent;
    },
    label: "Memory growth flame graph",
    tipRows,
    rootText: (n) => `all (${size(n.total)} ${metric})`,
    mirror: (n, d) => {
      d.grown = String(n.grown);
      d.released = String(n.released);
    },
  });
  const empty = el("p", { class: "muted", "data-testid": "growth-empty", hidden: true });
  const showEmpty = () => {
    empty.hidden = all() > 0;
    empty.textContent = metric === "grown" ? "RSS did not grow in this range." : "No memory was released in this range.";
  };
  showEmpty();
  for (const b of buttons)
    b.addEventListener("click", () => {
      metric = b.dataset.value as Metric;
      for (const x of buttons) x.setAttribute("aria-pressed", String(x === b));
      flame.setTree(growthTree(g, metric));
      flame.canvas.dataset.metric = metric;
      showEmpty();
    });
  flame.canvas.dataset.metric = metric;
  reset.addEventListener("click", () => flame.reset());
  search.addEventListener("input", () => flame.setSearch(search.value));

  const flamePanel = el(
    "section",
    { class: "panel", "data-testid": "growth-view", "aria-label": "Memory growth by function" },
    el("div", { class: "toolbar wrap" }, grown, released, net, el("span", { class: "spacer" }), search, seg, reset),
    empty,
    flame.element,
    flameLegend(
      "swatch-heat",
      "width: RSS growth charged to the code that ran (each sample gets the RSS change since the previous one); colour: its own share",
    ),
  );

  const pctOf = (v: number, whole: number) => (whole > 0 ? (100 * v) / whole : 0);
  const table = sortableTable<GrowthRow>({
    testid: "growth-table",
    caption: "Memory growth by function",
    rows: g.functions ?? [],
    initial: 3,
    tiebreak: (a, b) => b.total_grown_kb - a.total_grown_kb,
    columns: [
      { sort: "name", label: "Function", value: (r) => r.name, desc: false, cell: (r) => fnCell(r.name) },
      { sort: "file", label: "Location", value: locKey, desc: false, cell: (r) => locCell(r.file, r.line) },
      {
        sort: "self_grown",
        label: "Self grown",
        cls: "num",
        value: (r) => r.self_grown_kb,
        cell: (r) => barCell(kb(r.self_grown_kb), pctOf(r.self_grown_kb, g.grown_kb)),
      },
      {
        sort: "total_grown",
        label: "Total grown",
        cls: "num",
        value: (r) => r.total_grown_kb,
        cell: (r) => barCell(kb(r.total_grown_kb), pctOf(r.total_grown_kb, g.grown_kb)),
      },
      { sort: "self_released", label: "Self released", cls: "num", value: (r) => r.self_released_kb, cell: (r) => numCell(kb(r.self_released_kb)) },
      {
        sort: "total_released",
        label: "Total released",
        cls: "num",
        value: (r) => r.total_released_kb,
        cell: (r) => barCell(kb(r.total_released_kb), pctOf(r.total_released_kb, g.released_kb), {}, "pct pct-blue"),
      },
    ],
    rowAttrs: (r) => ({
      "data-testid": "growth-row",
      "data-name": r.name,
      "data-file": r.file,
      "data-line": r.line,
      "data-self-grown": r.self_grown_kb,
      "data-total-grown": r.total_grown_kb,
      "data-self-released": r.self_released_kb,
      "data-total-released": r.total_released_kb,
      tabindex: 0,
      title: "Highlight in the graph",
    }),
    onRow: highlightOnPick(search, flame),
  });

  return {
    parts: [
      flamePanel,
      el("section", { class: "panel", "aria-label": "Functions by memory growth" }, el("h2", {}, "Functions"), table.element),
    ],
    update(ng: Growth) {
      g = ng;
      summary();
      flame.setTree(growthTree(g, metric));
      showEmpty();
      table.setRows(g.functions ?? []);
    },
    destroy() {
      flame.destroy();
    },
  };
}

const kb = (v: number) => (v ? size(v) : "–");
