// Run page: metadata header, export links, and the Memory, Growth and CPU
// views as tabs. A time range (?from=&to= in the URL, picked in the Memory
// view) narrows the CPU and Growth views. A live run is polled every 2 s and
// its views refresh in place.

import { ApiError, collapsedUrl, getRun, speedscopeUrl, type RunDetail, type Window } from "./api.ts";
import { cpuView, prefetchCpu, type View } from "./cpu.ts";
import { el, statusBadge } from "./dom.ts";
import { ago, absoluteTime, count, decimationText, duration, hz, mib, period, seconds } from "./format.ts";
import { growthView } from "./growth.ts";
import { memoryView } from "./memory.ts";

type Tab = "memory" | "growth" | "cpu";

export const POLL_MS = 2000;

/** The time range in the page URL, if any and valid. */
export function rangeFromSearch(search: string): Window | null {
  const q = new URLSearchParams(search);
  const from = q.get("from");
  const to = q.get("to");
  if (from === null || to === null || from === "" || to === "") return null;
  const f = Number(from);
  const t = Number(to);
  return isFinite(f) && isFinite(t) && t > f && f >= 0 ? { from: f, to: t } : null;
}

function roundT(t: number): string {
  // Microseconds are finer than any sampling period: keeps URLs short.
  return String(Math.round(t * 1e6) / 1e6);
}

export async function renderRun(root: HTMLElement, id: string): Promise<void> {
  root.replaceChildren(el("p", { class: "muted loading" }, "Loading run…"));
  // Opening on the CPU view: ask for its tree now, not after the run's details.
  if (location.hash === "#cpu") prefetchCpu(id, rangeFromSearch(location.search));
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
  let range = rangeFromSearch(location.search);
  const tabNames: Tab[] = hasMemory ? ["memory", "growth", "cpu"] : ["memory", "cpu"];

  interface Slot {
    panel: HTMLElement;
    view: View | null;
    make: () => View | HTMLElement;
  }
  const slots = {} as Record<Tab, Slot>;
  const rangeBanner = (tab: Tab) => {
    if (!range) return null;
    const r = range;
    const clear = el("button", { type: "button", class: "btn", "data-testid": "range-clear" }, "Whole run");
    clear.addEventListener("click", () => setRange(null, tab));
    const end = run.t_end_s;
    return el(
      "div",
      { class: "range-banner", "data-testid": "range-banner", "data-from": r.from, "data-to": r.to, role: "status" },
      el("strong", {}, "Time range "),
      `${seconds(r.from)} – ${seconds(r.to)}`,
      el(
        "span",
        { class: "muted" },
        ` (${seconds(r.to - r.from)}${end ? ` of the run's ${seconds(end)}` : ""}, picked in the Memory view)`,
      ),
      el("span", { class: "spacer" }),
      clear,
    );
  };
  const make = (tab: Tab): Slot["make"] => {
    if (tab === "memory")
      return () =>
        hasMemory
          ? memoryView({
              runId: run.id,
              startTime: run.start_time,
              tEnd: () => run.t_end_s,
              initial: range,
              onRange: (w, t) => setRange(w, t),
            })
          : el(
              "section",
              { class: "panel empty" },
              el("span", { "data-testid": "peak-rss", "data-kib": 0 }, "Memory (RSS) was not recorded for this run."),
            );
    if (tab === "growth") return () => growthView(run, range);
    return () => cpuView(run, range);
  };
  for (const t of tabNames) {
    slots[t] = {
      panel: el("div", { class: "tab-panel", role: "tabpanel", id: `panel-${t}`, "data-testid": `${t}-panel` }),
      view: null,
      make: make(t),
    };
  }
  let current: Tab = "memory";
  const tabs = tabNames.map((t) =>
    el(
      "button",
      {
        type: "button",
        role: "tab",
        class: "tab",
        id: `tab-${t}`,
        "data-tab": t,
        "data-testid": `tab-${t}`,
        "aria-controls": `panel-${t}`,
      },
      t === "memory" ? "Memory" : t === "growth" ? "Memory growth" : "CPU",
    ),
  );

  const ensure = (t: Tab) => {
    const s = slots[t];
    // Views build lazily: a canvas must be visible to know its width.
    if (s.view || s.panel.childElementCount) return;
    const banner = t === "memory" ? null : rangeBanner(t);
    const v = s.make();
    if (v instanceof HTMLElement) s.panel.replaceChildren(v);
    else {
      s.view = v;
      s.panel.replaceChildren(...(banner ? [banner] : []), v.element);
    }
  };

  const show = (t: Tab, push = false) => {
    current = t;
    for (const b of tabs) {
      const on = b.dataset.tab === t;
      b.setAttribute("aria-selected", String(on));
      b.tabIndex = on ? 0 : -1;
    }
    for (const k of tabNames) slots[k].panel.hidden = k !== t;
    ensure(t);
    const url = new URL(location.href);
    url.hash = t;
    if (url.href !== location.href) history[push ? "pushState" : "replaceState"](null, "", url);
  };
  tabs.forEach((b, i) => {
    b.addEventListener("click", () => show(b.dataset.tab as Tab));
    // Arrow keys move between tabs (the WAI-ARIA tabs pattern).
    b.addEventListener("keydown", (e) => {
      const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!d) return;
      const next = tabs[(i + d + tabs.length) % tabs.length];
      next.focus();
      show(next.dataset.tab as Tab);
    });
  });

  /** Drop the range-dependent views so they rebuild for the new range. */
  const rebuild = (keepMemory: boolean) => {
    for (const t of tabNames) {
      if (t === "memory" && keepMemory) continue;
      slots[t].view?.destroy();
      slots[t].view = null;
      slots[t].panel.replaceChildren();
    }
  };

  function setRange(w: Window | null, tab: Tab): void {
    range = w;
    const url = new URL(location.href);
    if (w) {
      url.searchParams.set("from", roundT(w.from));
      url.searchParams.set("to", roundT(w.to));
    } else {
      url.searchParams.delete("from");
      url.searchParams.delete("to");
    }
    url.hash = tab;
    history.pushState(null, "", url);
    rebuild(true);
    show(tab);
    window.scrollTo({ top: 0 });
  }

  window.addEventListener("popstate", () => {
    // Back from a range to the whole run (or the other way round).
    const r = rangeFromSearch(location.search);
    const same = (r === null && range === null) || (r && range && r.from === range.from && r.to === range.to);
    if (!same) {
      range = r;
      rebuild(false);
    }
    const h = location.hash.slice(1) as Tab;
    show(tabNames.includes(h) ? h : current);
  });

  let head = header(run);
  const live = el("span", { class: "live-indicator", "data-testid": "live-indicator", hidden: true }, "updating every 2 s");
  root.replaceChildren(
    head,
    el("nav", { class: "tabs", role: "tablist", "aria-label": "Views" }, ...tabs, el("span", { class: "spacer" }), live),
    ...tabNames.map((t) => slots[t].panel),
  );
  const fromHash = location.hash.slice(1) as Tab;
  show(tabNames.includes(fromHash) ? fromHash : hasMemory ? "memory" : "cpu");

  // ---- live runs
  let polls = 0;
  const poll = async () => {
    let next: RunDetail;
    try {
      next = await getRun(run.id);
    } catch {
      window.setTimeout(poll, POLL_MS);
      return;
    }
    polls++;
    live.dataset.polls = String(polls);
    const changed = next.samples !== run.samples || next.status !== run.status || next.t_end_s !== run.t_end_s;
    run = next;
    if (changed) {
      const h = header(run);
      head.replaceWith(h);
      head = h;
      await Promise.all(tabNames.map((t) => slots[t].view?.refresh()));
    }
    if (run.status === "live") window.setTimeout(poll, POLL_MS);
    else {
      live.hidden = true;
      live.dataset.stopped = "1";
    }
  };
  if (run.status === "live") {
    live.hidden = false;
    window.setTimeout(poll, POLL_MS);
  }
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
  const d = run.decimation;
  const thinned = decimationText(d);
  return el(
    "header",
    { class: "run-header" },
    el("div", { class: "crumbs" }, el("a", { href: "/" }, "Runs"), " / ", el("span", { "data-testid": "run-project" }, run.project)),
    el(
      "div",
      { class: "title-row" },
      el("h1", { "data-testid": "run-function" }, run.function || "(unnamed)"),
      statusBadge(run.status),
      el("span", { class: "spacer" }),
      el(
        "div",
        { class: "exports", "data-testid": "exports" },
        el("span", { class: "muted" }, "Export:"),
        el(
          "a",
          {
            class: "btn btn-link",
            href: speedscopeUrl(run.id),
            download: `${run.id}.speedscope.json`,
            "data-testid": "export-speedscope",
            title: "Open in https://www.speedscope.app",
          },
          "speedscope JSON",
        ),
        el(
          "a",
          {
            class: "btn btn-link",
            href: collapsedUrl(run.id),
            download: `${run.id}.collapsed.txt`,
            "data-testid": "export-collapsed",
            title: "flamegraph.pl's collapsed stacks",
          },
          "collapsed stacks",
        ),
      ),
    ),
    run.error ? el("div", { class: "error", "data-testid": "run-error" }, run.error) : null,
    el("dl", { class: "meta", "data-testid": "run-meta" }, ...items),
    thinned && d
      ? el(
          "p",
          {
            class: "note decimation",
            "data-testid": "run-decimation",
            "data-samples-before": d.samples_before,
            "data-samples-after": d.samples_after,
            "data-original-period-s": d.original_period_s,
            "data-period-s": d.period_s,
            title: `The relay kept fewer samples of this old, high-rate profile (one every ${period(d.period_s)} instead of every ${period(d.original_period_s)}); shares of time stay close, counts are of the kept samples.`,
          },
          thinned,
        )
      : null,
  );
}
