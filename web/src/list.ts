// List page: runs, newest first; filter as you type, by start date, sort by
// any column, select two runs to compare. When all runs fit in one page the
// page filters and sorts locally; beyond that the server does (sort=, order=,
// q=, since=, until=) and "Show more" pages through. Everything is mirrored
// in the URL so the view can be shared.

import { listRuns, type ListQuery, type Run, type RunSort } from "./api.ts";
import { el, statusBadge } from "./dom.ts";
import { absoluteTime, ago, count, duration, mib } from "./format.ts";

const DEFAULT_PAGE = 200;

interface Col {
  key: string;
  label: string;
  sort?: RunSort;
  cls?: string;
  /** First click sorts descending (numbers, dates) or ascending (names). */
  desc?: boolean;
}

const COLS: Col[] = [
  { key: "select", label: "" },
  { key: "project", label: "Project", sort: "project", desc: false },
  { key: "function", label: "Top-level function", sort: "function", desc: false },
  { key: "peak", label: "Peak memory", sort: "peak_rss", cls: "num", desc: true },
  { key: "duration", label: "Duration", sort: "duration", cls: "num", desc: true },
  { key: "samples", label: "Samples", sort: "samples", cls: "num", desc: true },
  { key: "status", label: "Status" },
  { key: "when", label: "When", sort: "start_time", desc: true },
];

const SORTS: RunSort[] = ["start_time", "duration", "peak_rss", "samples", "project", "function"];

/** Local-sort key of a run for a server sort name (same order as the server's). */
export function sortValue(r: Run, s: RunSort): number | string {
  switch (s) {
    case "duration":
      return r.duration_s;
    case "peak_rss":
      return r.peak_rss_kb;
    case "samples":
      return r.samples;
    case "project":
      return r.project.toLowerCase();
    case "function":
      return r.function.toLowerCase();
    default:
      return Date.parse(r.start_time) || 0;
  }
}

/** A yyyy-mm-dd date input as Unix seconds: the start of that local day, or of the next one. */
export function dayBound(value: string, end: boolean): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (!m) return undefined;
  const d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + (end ? 1 : 0));
  const s = d.getTime() / 1000;
  return isFinite(s) ? (end ? s - 0.001 : s) : undefined;
}

export async function renderList(root: HTMLElement): Promise<void> {
  document.title = "Runs · vmprof-viewer";
  const params = new URLSearchParams(location.search);
  const pageSize = Math.max(1, Math.min(1000, Number(params.get("limit")) || DEFAULT_PAGE));
  let sort: RunSort = SORTS.includes(params.get("sort") as RunSort) ? (params.get("sort") as RunSort) : "start_time";
  let order: "asc" | "desc" = params.get("order") === "asc" ? "asc" : "desc";

  const search = el("input", {
    type: "search",
    class: "search",
    placeholder: "Filter by project or function…",
    "aria-label": "Filter runs by project or function",
    "data-testid": "run-search",
    value: params.get("q") ?? "",
  });
  const since = el("input", {
    type: "date",
    class: "date",
    "aria-label": "Started on or after",
    "data-testid": "run-since",
    value: params.get("since") ?? "",
  });
  const until = el("input", {
    type: "date",
    class: "date",
    "aria-label": "Started on or before",
    "data-testid": "run-until",
    value: params.get("until") ?? "",
  });
  const clearDates = el("button", { type: "button", class: "btn btn-small", "data-testid": "run-dates-clear", title: "Any date" }, "×");
  const summary = el("span", { class: "muted", "data-testid": "run-count", "aria-live": "polite" });
  const compare = el("button", { type: "button", class: "btn btn-primary", "data-testid": "compare-button", disabled: true }, "Compare");
  const compareHint = el("span", { class: "muted", "data-testid": "compare-hint" }, "Tick two runs to compare them");
  const share = el("a", { href: location.href, "data-testid": "share-link", title: "A link to this list with these filters" }, "Link to this view");
  const more = el("button", { type: "button", class: "btn", "data-testid": "runs-more", hidden: true }, "Show more");
  const tbody = el("tbody");
  const empty = el("p", { class: "muted empty", "data-testid": "no-runs", hidden: true });

  const ths = COLS.map((c) => {
    const th = el("th", { scope: "col", class: c.cls, "data-col": c.key, "data-sort": c.sort });
    if (c.sort) {
      const b = el("button", { type: "button", class: "sort" }, c.label);
      b.addEventListener("click", () => {
        if (sort === c.sort) order = order === "desc" ? "asc" : "desc";
        else {
          sort = c.sort!;
          order = c.desc ? "desc" : "asc";
        }
        onChange(true);
      });
      th.append(b);
    } else if (c.key === "select") th.append(el("span", { class: "visually-hidden" }, "Select to compare"));
    else th.append(c.label);
    return th;
  });
  const table = el("table", { class: "runs", "data-testid": "runs-table" }, el("thead", {}, el("tr", {}, ...ths)), tbody);

  root.replaceChildren(
    el("div", { class: "page-head" }, el("h1", {}, "Runs"), el("span", { class: "spacer" }), summary, search),
    el(
      "div",
      { class: "page-head filters" },
      el("label", { class: "muted" }, "Started between "),
      since,
      el("span", { class: "muted" }, "and"),
      until,
      clearDates,
      el("span", { class: "spacer" }),
      compareHint,
      compare,
      share,
    ),
    el("div", { class: "table-wrap panel flush" }, table),
    empty,
    el("div", { class: "more-row" }, more),
  );

  const selected = new Map<string, Run>();
  let all: Run[] = [];
  let total = 0;
  /** All runs are loaded: filter and sort here. Otherwise the server does. */
  let local = true;
  let seq = 0;
  let rows: { run: Run; tr: HTMLTableRowElement; hay: string }[] = [];

  const query = (): ListQuery => ({
    q: search.value.trim() || undefined,
    since: dayBound(since.value, false),
    until: dayBound(until.value, true),
    sort,
    order,
    limit: pageSize,
  });

  const updateCompare = () => {
    const n = selected.size;
    compare.disabled = n !== 2;
    compareHint.textContent =
      n === 0 ? "Tick two runs to compare them" : n === 1 ? "Tick one more run" : n === 2 ? "2 runs selected" : `${n} selected: tick exactly two`;
  };

  const row = (r: Run): HTMLTableRowElement => {
    const href = `/runs/${encodeURIComponent(r.id)}`;
    const box = el("input", {
      type: "checkbox",
      "data-testid": "run-select",
      "aria-label": `Select ${r.project} ${r.function} to compare`,
      checked: selected.has(r.id),
    });
    box.addEventListener("change", () => {
      if (box.checked) selected.set(r.id, r);
      else selected.delete(r.id);
      updateCompare();
    });
    const tr = el(
      "tr",
      { "data-testid": "run-row", "data-run-id": r.id },
      el("td", { "data-col": "select", class: "select" }, box),
      el("td", { "data-col": "project" }, el("a", { href }, r.project)),
      el("td", { "data-col": "function", class: "fn" }, el("a", { href, tabindex: -1 }, r.function)),
      el("td", { "data-col": "peak", class: "num", "data-kib": r.peak_rss_kb }, r.peak_rss_kb ? mib(r.peak_rss_kb) : "–"),
      el("td", { "data-col": "duration", class: "num", "data-value": r.duration_s }, duration(r.duration_s)),
      el("td", { "data-col": "samples", class: "num", "data-value": r.samples }, count(r.samples)),
      el("td", { "data-col": "status" }, statusBadge(r.status)),
      el("td", { "data-col": "when" }, el("time", { datetime: r.start_time, title: absoluteTime(r.start_time) }, ago(r.start_time))),
    );
    // The whole row is a link target, but keep real <a>s for middle-click / keyboard.
    tr.addEventListener("click", (e) => {
      if ((e.target as Element).closest("a, input, label") || e.button !== 0) return;
      if (e.ctrlKey || e.metaKey) window.open(href, "_blank");
      else location.href = href;
    });
    return tr;
  };

  const show = (list: Run[], append = false) => {
    const made = list.map((r) => ({ run: r, tr: row(r), hay: `${r.project}\n${r.function}`.toLowerCase() }));
    rows = append ? [...rows, ...made] : made;
  };

  /** Local mode: order and filter the rows in place. */
  const apply = () => {
    const q = search.value.trim().toLowerCase();
    const lo = dayBound(since.value, false);
    const hi = dayBound(until.value, true);
    let list = rows;
    if (local) {
      const dir = order === "desc" ? -1 : 1;
      list = [...rows].sort((a, b) => {
        const va = sortValue(a.run, sort);
        const vb = sortValue(b.run, sort);
        return va < vb ? -dir : va > vb ? dir : a.run.id < b.run.id ? -1 : 1;
      });
    }
    let shown = 0;
    for (const r of list) {
      const t = Date.parse(r.run.start_time) / 1000;
      const hit =
        (!q || r.hay.includes(q)) && (lo === undefined || t >= lo) && (hi === undefined || t <= hi);
      r.tr.hidden = !hit;
      if (hit) shown++;
    }
    tbody.replaceChildren(...list.map((r) => r.tr));
    for (const th of ths) {
      const on = th.dataset.sort === sort;
      th.setAttribute("aria-sort", on ? (order === "desc" ? "descending" : "ascending") : "none");
    }
    const filtered = Boolean(q || lo !== undefined || hi !== undefined);
    const n = local ? shown : total;
    summary.textContent = filtered ? `${count(n)} matching run${n === 1 ? "" : "s"}` : `${count(n)} run${n === 1 ? "" : "s"}`;
    if (!local && rows.length < total) summary.textContent += ` (showing ${count(rows.length)})`;
    empty.hidden = shown > 0;
    empty.textContent = total === 0 && !filtered ? "No runs yet. Profile a function with vmprof_viewer_client or upload a profile." : "No runs match.";
    more.hidden = local || rows.length >= total;
    // Mirror the view in the URL so it can be shared; replaceState keeps history clean while typing.
    const url = new URL(location.href);
    const set = (k: string, v: string | undefined) => (v ? url.searchParams.set(k, v) : url.searchParams.delete(k));
    set("q", search.value || undefined);
    set("since", since.value || undefined);
    set("until", until.value || undefined);
    set("sort", sort === "start_time" ? undefined : sort);
    set("order", order === "desc" ? undefined : order);
    if (url.href !== location.href) history.replaceState(null, "", url);
    share.href = url.href;
  };

  let timer = 0;
  const fetchServer = (delay: number) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      const my = ++seq;
      try {
        const res = await listRuns(query());
        if (my !== seq) return;
        total = res.total;
        show(res.runs);
        apply();
      } catch {
        // Keep the rows shown.
      }
    }, delay);
  };

  const onChange = (now: boolean) => {
    apply();
    if (!local) fetchServer(now ? 0 : 250);
  };

  try {
    // First page: everything unfiltered, to learn whether it all fits.
    const res = await listRuns({ limit: pageSize, sort, order });
    all = res.runs;
    total = res.total;
  } catch (e) {
    root.append(el("div", { class: "error", "data-testid": "error" }, `Could not load runs: ${(e as Error).message}`));
    return;
  }
  local = total <= all.length;
  table.dataset.mode = local ? "local" : "server";
  show(all);
  apply();
  if (!local && (search.value.trim() || since.value || until.value)) fetchServer(0);

  search.addEventListener("input", () => onChange(false));
  since.addEventListener("change", () => onChange(true));
  until.addEventListener("change", () => onChange(true));
  clearDates.addEventListener("click", () => {
    since.value = "";
    until.value = "";
    onChange(true);
  });
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const res = await listRuns({ ...query(), offset: rows.length });
      total = res.total;
      show(res.runs, true);
      apply();
    } finally {
      more.disabled = false;
    }
  });
  compare.addEventListener("click", () => {
    if (selected.size !== 2) return;
    // Before = the older run.
    const [a, b] = [...selected.values()].sort((x, y) => Date.parse(x.start_time) - Date.parse(y.start_time));
    location.href = `/runs/${encodeURIComponent(a.id)}/compare/${encodeURIComponent(b.id)}`;
  });
  updateCompare();
}
