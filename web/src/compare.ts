// Compare page (/runs/{a}/compare/{b}): a differential flame graph of two runs
// (width: the frame's share in both; colour: how its share changed) and the
// functions sorted by the change of their share.

import { ApiError, getDiff, getRun, type DiffRow, type RunDetail } from "./api.ts";
import { buildDiffTree, diffColour, formatPp, maxAbsDelta, type DiffNode } from "./diff.ts";
import { el, statusBadge } from "./dom.ts";
import { FlameGraph, type TipRow } from "./flame.ts";
import { absoluteTime, ago, count, duration, percent } from "./format.ts";
import { barCell, fnCell, highlightOnPick, locCell, locKey, numCell, sortableTable } from "./table.ts";

export async function renderCompare(root: HTMLElement, a: string, b: string): Promise<void> {
  document.title = "Compare runs · vmprof-viewer";
  root.replaceChildren(el("p", { class: "muted loading" }, "Loading both runs…"));
  let ra: RunDetail;
  let rb: RunDetail;
  let diff;
  try {
    [ra, rb, diff] = await Promise.all([getRun(a), getRun(b), getDiff(a, b, new URLSearchParams(location.search))]);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 404 ? "One of the runs does not exist." : `Could not compare the runs: ${(e as Error).message}`;
    root.replaceChildren(el("div", { class: "error", "data-testid": "error" }, msg), el("p", {}, el("a", { href: "/" }, "← All runs")));
    return;
  }
  const aN = diff.a.samples;
  const bN = diff.b.samples;
  const tree = buildDiffTree(diff.root, aN, bN);
  const maxAbs = maxAbsDelta(tree);

  const card = (r: RunDetail, which: "a" | "b", samples: number) =>
    el(
      "div",
      { class: `panel run-card card-${which}`, "data-testid": `compare-${which}`, "data-run-id": r.id, "data-samples": samples },
      el("div", { class: "card-tag" }, which === "a" ? "Before (A)" : "After (B)"),
      el("div", { class: "card-title" }, el("a", { href: `/runs/${encodeURIComponent(r.id)}`, "data-testid": "compare-run-link" }, r.function || r.id), " ", statusBadge(r.status)),
      el("div", { class: "muted" }, r.project),
      el(
        "div",
        { class: "muted small" },
        `${count(samples)} samples · ${duration(r.duration_s)} · `,
        el("time", { datetime: r.start_time, title: absoluteTime(r.start_time) }, ago(r.start_time)),
      ),
    );
  const swap = el(
    "a",
    { class: "btn", href: `/runs/${encodeURIComponent(b)}/compare/${encodeURIComponent(a)}`, "data-testid": "compare-swap", title: "Swap before and after" },
    "⇄ Swap",
  );

  const share = (v: number, n: number) => percent(v, n);
  const tipRows = (n: DiffNode): TipRow[] => [
    { label: "Before", testid: "diff-tooltip-a", value: n.aTotal, text: `${count(n.aTotal)} samples (${share(n.aTotal, aN)})` },
    { label: "After", testid: "diff-tooltip-b", value: n.bTotal, text: `${count(n.bTotal)} samples (${share(n.bTotal, bN)})` },
    { label: "Change", testid: "diff-tooltip-delta", value: n.delta.toFixed(3), text: `${formatPp(n.delta)} of the samples (self ${formatPp(n.deltaSelf)})` },
  ];
  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Highlight frames…",
    "aria-label": "Highlight frames matching",
    "data-testid": "diff-search",
  });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "diff-reset", hidden: true }, "Reset zoom");
  const flame = new FlameGraph<DiffNode>(tree, {
    id: "diff",
    label: "Differential flame graph",
    colour: (n) => diffColour(n.delta, maxAbs),
    onChange: (focus) => {
      reset.hidden = !focus.parent;
    },
    tipRows,
    rootText: () => `all (A ${count(aN)} · B ${count(bN)} samples)`,
    mirror: (n, d) => {
      d.aTotal = String(n.aTotal);
      d.bTotal = String(n.bTotal);
      d.delta = n.delta.toFixed(3);
    },
  });
  search.addEventListener("input", () => flame.setSearch(search.value));
  reset.addEventListener("click", () => flame.reset());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && flame.zoomed) flame.reset();
  });

  const pp = (v: number, n: number) => (n > 0 ? (100 * v) / n : 0);
  const table = sortableTable<DiffRow>({
    testid: "diff-table",
    caption: "Functions by change of their share of samples",
    rows: diff.functions,
    initial: 4,
    tiebreak: (x, y) => Math.abs(y.delta_total_pct) - Math.abs(x.delta_total_pct),
    columns: [
      { sort: "name", label: "Function", value: (r) => r.name, desc: false, cell: (r) => fnCell(r.name) },
      { sort: "file", label: "Location", value: locKey, desc: false, cell: (r) => locCell(r.file, r.line) },
      { sort: "a_total", label: "Before", cls: "num", title: "Share of A's samples with the function on the stack", value: (r) => pp(r.a_total, aN), cell: (r) => numCell(share(r.a_total, aN), { title: `${count(r.a_total)} samples` }) },
      { sort: "b_total", label: "After", cls: "num", title: "Share of B's samples with the function on the stack", value: (r) => pp(r.b_total, bN), cell: (r) => numCell(share(r.b_total, bN), { title: `${count(r.b_total)} samples` }) },
      {
        sort: "delta_total",
        label: "Change",
        cls: "num",
        title: "After − before, percentage points; sorted by size",
        value: (r) => Math.abs(r.delta_total_pct),
        cell: (r) => deltaCell(r.delta_total_pct, maxAbs),
      },
      { sort: "delta_self", label: "Self change", cls: "num", value: (r) => Math.abs(r.delta_self_pct), cell: (r) => deltaCell(r.delta_self_pct, maxAbs) },
    ],
    rowAttrs: (r) => ({
      "data-testid": "diff-row",
      "data-name": r.name,
      "data-file": r.file,
      "data-line": r.line,
      "data-a-total": r.a_total,
      "data-b-total": r.b_total,
      "data-a-self": r.a_self,
      "data-b-self": r.b_self,
      "data-delta-total": r.delta_total_pct,
      "data-delta-self": r.delta_self_pct,
      tabindex: 0,
      title: "Highlight in the graph",
    }),
    onRow: highlightOnPick(search, flame),
  });

  root.replaceChildren(
    el(
      "header",
      { class: "run-header" },
      el("div", { class: "crumbs" }, el("a", { href: "/" }, "Runs"), " / Compare"),
      el("div", { class: "title-row" }, el("h1", {}, "Compare two runs"), el("span", { class: "spacer" }), swap),
    ),
    el("div", { class: "compare-cards" }, card(ra, "a", aN), el("div", { class: "vs", "aria-hidden": "true" }, "→"), card(rb, "b", bN)),
    el(
      "section",
      { class: "panel", "data-testid": "diff-view", "aria-label": "Differential flame graph" },
      el("div", { class: "toolbar" }, el("h2", {}, "Where the time went, A → B"), el("span", { class: "spacer" }), search, reset),
      flame.element,
      el(
        "div",
        { class: "legend" },
        el("span", { class: "swatch swatch-diff" }),
        "colour: change of the frame's share of samples — blue shrank, red grew; width: its share in A and B together",
      ),
    ),
    el("section", { class: "panel", "aria-label": "Functions" }, el("h2", {}, "Functions by change"), table.element),
  );
}

function deltaCell(d: number, maxAbs: number): HTMLTableCellElement {
  const share = Math.min(100, (100 * Math.abs(d)) / Math.max(1, maxAbs));
  return barCell(formatPp(d), share, { "data-delta": d }, d >= 0 ? "pct pct-red" : "pct pct-blue");
}
