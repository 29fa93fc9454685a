// List page: all runs, newest first, filtered as you type.

import { listRuns, type Run } from "./api.ts";
import { el, statusBadge } from "./dom.ts";
import { absoluteTime, ago, count, duration, mib } from "./format.ts";

export async function renderList(root: HTMLElement): Promise<void> {
  document.title = "Runs · vmprof-viewer";
  const params = new URLSearchParams(location.search);
  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Filter by project or function…",
    "aria-label": "Filter runs by project or function",
    "data-testid": "run-search",
    value: params.get("q") ?? "",
  });
  const summary = el("span", { class: "muted", "data-testid": "run-count" });
  const tbody = el("tbody");
  const empty = el("p", { class: "muted empty", "data-testid": "no-runs", hidden: true });
  const table = el(
    "table",
    { class: "runs", "data-testid": "runs-table" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col" }, "Project"),
        el("th", { scope: "col" }, "Top-level function"),
        el("th", { scope: "col", class: "num" }, "Peak memory"),
        el("th", { scope: "col", class: "num" }, "Duration"),
        el("th", { scope: "col", class: "num" }, "Samples"),
        el("th", { scope: "col" }, "Status"),
        el("th", { scope: "col" }, "When"),
      ),
    ),
    tbody,
  );
  root.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Runs"), el("span", { class: "spacer" }), summary, search),
    el("div", { class: "table-wrap panel flush" }, table),
    empty,
  );

  let runs: Run[];
  let total = 0;
  try {
    ({ runs, total } = await listRuns());
  } catch (e) {
    root.append(el("div", { class: "error", "data-testid": "error" }, `Could not load runs: ${(e as Error).message}`));
    return;
  }
  // Beyond one page of runs the server does the filtering; the local filter
  // still answers each keystroke at once.
  const serverSide = total > runs.length;
  let rows: { tr: HTMLTableRowElement; hay: string }[] = [];
  const show = (list: Run[]) => {
    rows = list.map((r) => ({ tr: row(r), hay: `${r.project}\n${r.function}`.toLowerCase() }));
    tbody.replaceChildren(...rows.map((r) => r.tr));
  };

  const apply = () => {
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    for (const r of rows) {
      const hit = !q || r.hay.includes(q);
      r.tr.hidden = !hit;
      if (hit) shown++;
    }
    summary.textContent = q ? `${shown} matching run${shown === 1 ? "" : "s"}` : `${count(total)} run${total === 1 ? "" : "s"}`;
    empty.hidden = shown > 0;
    empty.textContent = total === 0 ? "No runs yet. Profile a function with vmprof_viewer_client or upload a profile." : "No runs match.";
    // Mirror the filter in the URL so the view can be shared; replaceState keeps history clean while typing.
    const url = new URL(location.href);
    if (search.value) url.searchParams.set("q", search.value);
    else url.searchParams.delete("q");
    if (url.href !== location.href) history.replaceState(null, "", url);
  };

  let timer = 0;
  let seq = 0;
  const fetchFiltered = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      const my = ++seq;
      try {
        const res = await listRuns(search.value.trim());
        if (my !== seq) return;
        show(res.runs);
        apply();
      } catch {
        // Keep the locally filtered rows.
      }
    }, 250);
  };

  show(runs);
  search.addEventListener("input", () => {
    apply();
    if (serverSide) fetchFiltered();
  });
  apply();
  if (serverSide && search.value.trim()) fetchFiltered();
}

function row(r: Run): HTMLTableRowElement {
  const href = `/runs/${encodeURIComponent(r.id)}`;
  const tr = el(
    "tr",
    { "data-testid": "run-row", "data-run-id": r.id },
    el("td", { "data-col": "project" }, el("a", { href }, r.project)),
    el("td", { "data-col": "function", class: "fn" }, el("a", { href, tabindex: -1 }, r.function)),
    el("td", { "data-col": "peak", class: "num", "data-kib": r.peak_rss_kb }, r.peak_rss_kb ? mib(r.peak_rss_kb) : "–"),
    el("td", { "data-col": "duration", class: "num" }, duration(r.duration_s)),
    el("td", { "data-col": "samples", class: "num" }, count(r.samples)),
    el("td", { "data-col": "status" }, statusBadge(r.status)),
    el("td", { "data-col": "when" }, el("time", { datetime: r.start_time, title: absoluteTime(r.start_time) }, ago(r.start_time))),
  );
  // The whole row is a link target, but keep real <a>s for middle-click / keyboard.
  tr.addEventListener("click", (e) => {
    if ((e.target as Element).closest("a") || e.button !== 0) return;
    if (e.ctrlKey || e.metaKey) window.open(href, "_blank");
    else location.href = href;
  });
  return tr;
}
