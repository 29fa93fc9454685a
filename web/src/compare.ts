// Compare page (/runs/{a}/compare/{b}): a differential flame graph of two runs
// (width: the frame's share in both; colour: how its share changed) and the
// functions sorted by the change of their share. Each run can be narrowed to
// a time window (?a_from=&a_to=&b_from=&b_to=, passed on to /api/diff): picked
// on a small chart of the run or typed in; the URL keeps it, so links share it.

import { ApiError, getDiff, getRun, type Diff, type DiffRow, type RunDetail } from "./api.ts";
import {
  buildDiffTree,
  compareQuery,
  compareWindows,
  diffColour,
  formatPp,
  maxAbsDelta,
  sameWindow,
  swapWindows,
  type CompareWindows,
  type DiffNode,
  type PartialWindow,
} from "./diff.ts";
import { el, statusBadge } from "./dom.ts";
import { FlameGraph, flameLegend, type TipRow } from "./flame.ts";
import { absoluteTime, ago, count, duration, percent, seconds } from "./format.ts";
import { barCell, fnCell, highlightOnPick, locCell, locKey, numCell, sortableTable } from "./table.ts";
import { windowPicker, type WindowPicker } from "./window-picker.ts";

const diffParams = (w: CompareWindows) => new URLSearchParams(compareQuery(w));

export async function renderCompare(root: HTMLElement, a: string, b: string): Promise<void> {
  document.title = "Compare runs · vmprof-viewer";
  root.replaceChildren(el("p", { class: "muted loading" }, "Loading both runs…"));
  let wins = compareWindows(location.search);
  let ra: RunDetail;
  let rb: RunDetail;
  let diff: Diff;
  try {
    [ra, rb, diff] = await Promise.all([getRun(a), getRun(b), getDiff(a, b, diffParams(wins))]);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 404 ? "One of the runs does not exist." : `Could not compare the runs: ${(e as Error).message}`;
    root.replaceChildren(el("div", { class: "error", "data-testid": "error" }, msg), el("p", {}, el("a", { href: "/" }, "← All runs")));
    return;
  }

  const pickers = {} as Record<"a" | "b", WindowPicker>;
  const cardSamples = {} as Record<"a" | "b", HTMLElement>;
  const cards = {} as Record<"a" | "b", HTMLElement>;
  const card = (r: RunDetail, which: "a" | "b") => {
    pickers[which] = windowPicker({ which, run: r, initial: wins[which], onChange: (w) => setWindow(which, w) });
    cardSamples[which] = el("span", { "data-testid": `compare-${which}-samples` });
    cards[which] = el(
      "div",
      { class: `panel run-card card-${which}`, "data-testid": `compare-${which}`, "data-run-id": r.id },
      el("div", { class: "card-tag" }, which === "a" ? "Before (A)" : "After (B)"),
      el("div", { class: "card-title" }, el("a", { href: `/runs/${encodeURIComponent(r.id)}`, "data-testid": "compare-run-link" }, r.function || r.id), " ", statusBadge(r.status)),
      el("div", { class: "muted" }, r.project),
      el(
        "div",
        { class: "muted small" },
        cardSamples[which],
        ` · ${duration(r.duration_s)} · `,
        el("time", { datetime: r.start_time, title: absoluteTime(r.start_time) }, ago(r.start_time)),
      ),
      pickers[which].element,
    );
    return cards[which];
  };
  const swap = el("a", { class: "btn", "data-testid": "compare-swap", title: "Swap before and after (and their windows)" }, "⇄ Swap");

  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Highlight frames…",
    "aria-label": "Highlight frames matching",
    "data-testid": "diff-search",
  });
  const reset = el("button", { type: "button", class: "btn", "data-testid": "diff-reset", hidden: true }, "Reset zoom");
  const status = el("span", { class: "muted", "data-testid": "diff-status", "aria-live": "polite" });
  const flameBox = el("div", {});
  const tablePanel = el("section", { class: "panel", "aria-label": "Functions" });
  const diffView = el(
    "section",
    { class: "panel", "data-testid": "diff-view", "aria-label": "Differential flame graph" },
    el("div", { class: "toolbar" }, el("h2", {}, "Where the time went, A → B"), status, el("span", { class: "spacer" }), search, reset),
    flameBox,
    flameLegend(
      "swatch-diff",
      "colour: change of the frame's share of samples — blue shrank, red grew; width: its share in A and B together",
    ),
  );
  let flame: FlameGraph<DiffNode> | null = null;
  search.addEventListener("input", () => flame?.setSearch(search.value));
  reset.addEventListener("click", () => flame?.reset());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && flame?.zoomed) flame.reset();
  });

  /** Show one /api/diff answer: cards' sample counts, the graph and the table. */
  function show(d: Diff, w: CompareWindows): void {
    const aN = d.a.samples;
    const bN = d.b.samples;
    for (const [which, n] of [["a", aN], ["b", bN]] as const) {
      cards[which].dataset.samples = String(n);
      const x = w[which];
      cardSamples[which].textContent = x ? `${count(n)} samples in ${windowText(x)}` : `${count(n)} samples`;
    }
    const tree = buildDiffTree(d.root, aN, bN);
    const maxAbs = maxAbsDelta(tree);
    const share = (v: number, n: number) => percent(v, n);
    const tipRows = (n: DiffNode): TipRow[] => [
      { label: "Before", testid: "diff-tooltip-a", value: n.aTotal, text: `${count(n.aTotal)} samples (${share(n.aTotal, aN)})` },
      { label: "After", testid: "diff-tooltip-b", value: n.bTotal, text: `${count(n.bTotal)} samples (${share(n.bTotal, bN)})` },
      { label: "Change", testid: "diff-tooltip-delta", value: n.delta.toFixed(3), text: `${formatPp(n.delta)} of the samples (self ${formatPp(n.deltaSelf)})` },
    ];
    flame?.destroy();
    reset.hidden = true;
    const fg = new FlameGraph<DiffNode>(tree, {
      id: "diff",
      label: "Differential flame graph",
      colour: (n) => diffColour(n.delta, maxAbs),
      onChange: (focus) => {
        reset.hidden = !focus.parent;
      },
      tipRows,
      rootText: () => `all (A ${count(aN)} · B ${count(bN)} samples)`,
      mirror: (n, dd) => {
        dd.aTotal = String(n.aTotal);
        dd.bTotal = String(n.bTotal);
        dd.delta = n.delta.toFixed(3);
      },
    });
    flame = fg;
    flameBox.replaceChildren(fg.element);
    if (search.value) fg.setSearch(search.value);

    const pp = (v: number, n: number) => (n > 0 ? (100 * v) / n : 0);
    const table = sortableTable<DiffRow>({
      testid: "diff-table",
      caption: "Functions by change of their share of samples",
      rows: d.functions,
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
      onRow: highlightOnPick(search, fg),
    });
    tablePanel.replaceChildren(el("h2", {}, "Functions by change"), table.element);
    // Last: what the page shows now answers this query (tests wait for it).
    diffView.dataset.query = compareQuery(w);
    delete diffView.dataset.loading;
  }

  const swapHref = () => {
    const q = compareQuery(swapWindows(wins));
    return `/runs/${encodeURIComponent(b)}/compare/${encodeURIComponent(a)}${q ? `?${q}` : ""}`;
  };

  let seq = 0;
  async function load(): Promise<void> {
    const my = ++seq;
    const w = wins;
    diffView.dataset.loading = "1";
    status.textContent = "Comparing the windows…";
    status.className = "muted";
    delete status.dataset.testid;
    try {
      const d = await getDiff(a, b, diffParams(w));
      if (my !== seq) return;
      status.textContent = "";
      show(d, w);
    } catch (e) {
      if (my !== seq) return;
      status.className = "error";
      status.dataset.testid = "error";
      status.textContent = `Could not compare these windows: ${(e as Error).message}`;
      delete diffView.dataset.loading;
    }
  }

  /** Apply new windows: URL (a new history entry unless `push` is false), swap link, pickers, the diff. */
  function apply(next: CompareWindows, push: boolean): void {
    const changed = !sameWindow(next.a, wins.a) || !sameWindow(next.b, wins.b);
    wins = next;
    pickers.a.set(wins.a);
    pickers.b.set(wins.b);
    swap.setAttribute("href", swapHref());
    if (!changed) return;
    const url = new URL(location.href);
    const q = compareQuery(wins);
    url.search = q ? `?${q}` : "";
    if (push && url.href !== location.href) history.pushState(null, "", url);
    void load();
  }
  function setWindow(which: "a" | "b", w: PartialWindow | null): void {
    apply({ ...wins, [which]: w }, true);
  }
  window.addEventListener("popstate", () => apply(compareWindows(location.search), false));

  root.replaceChildren(
    el(
      "header",
      { class: "run-header" },
      el("div", { class: "crumbs" }, el("a", { href: "/" }, "Runs"), " / Compare"),
      el("div", { class: "title-row" }, el("h1", {}, "Compare two runs"), el("span", { class: "spacer" }), swap),
    ),
    el("div", { class: "compare-cards" }, card(ra, "a"), el("div", { class: "vs", "aria-hidden": "true" }, "→"), card(rb, "b")),
    diffView,
    tablePanel,
  );
  swap.setAttribute("href", swapHref());
  show(diff, wins);
}

function windowText(w: PartialWindow): string {
  if (w.from !== undefined && w.to !== undefined) return `${seconds(w.from)} – ${seconds(w.to)}`;
  if (w.from !== undefined) return `${seconds(w.from)} – end`;
  return `start – ${seconds(w.to ?? 0)}`;
}

function deltaCell(d: number, maxAbs: number): HTMLTableCellElement {
  const share = Math.min(100, (100 * Math.abs(d)) / Math.max(1, maxAbs));
  return barCell(formatPp(d), share, { "data-delta": d }, d >= 0 ? "pct pct-red" : "pct pct-blue");
}
