// A sortable table: click a header (or focus it and press Enter) to sort by
// that column, again to reverse. Rows are rebuilt only when the data or the
// order changes, and at most `maxRows` of them.

import { el } from "./dom.ts";
import { count } from "./format.ts";

type Attrs = Record<string, string | number | boolean | undefined>;

export interface Column<R> {
  /** Sort key, also the header's data-sort (several columns may share one). */
  sort?: string;
  label: string;
  title?: string;
  cls?: string;
  value?: (r: R) => number | string;
  cell: (r: R) => HTMLTableCellElement;
  /** First click sorts descending (numbers) or ascending (names). */
  desc?: boolean;
}

export interface TableOptions<R> {
  testid: string;
  columns: Column<R>[];
  rows: R[];
  /** Index of the column sorted at first. */
  initial: number;
  rowAttrs: (r: R) => Attrs;
  onRow?: (r: R, tr: HTMLTableRowElement) => void;
  /** Ties (and equal values) keep this order. */
  tiebreak?: (a: R, b: R) => number;
  maxRows?: number;
  caption?: string;
}

export interface SortableTable<R> {
  element: HTMLElement;
  table: HTMLTableElement;
  setRows(rows: R[]): void;
}

export function sortableTable<R>(o: TableOptions<R>): SortableTable<R> {
  let rows = o.rows;
  let active = o.initial;
  let desc = o.columns[active].desc ?? true;
  const max = o.maxRows ?? 2000;
  const tbody = el("tbody");
  const more = el("p", { class: "muted table-more", hidden: true });
  const ths = o.columns.map((c, i) => {
    const th = el("th", { class: c.cls, scope: "col", title: c.title, "data-sort": c.sort });
    if (c.sort && c.value) {
      const b = el("button", { type: "button", class: "sort" }, c.label);
      b.addEventListener("click", () => {
        if (active === i) desc = !desc;
        else {
          active = i;
          desc = c.desc ?? true;
        }
        render();
      });
      th.append(b);
    } else th.append(c.label);
    return th;
  });
  const table = el(
    "table",
    { class: "data", "data-testid": o.testid },
    o.caption ? el("caption", { class: "visually-hidden" }, o.caption) : null,
    el("thead", {}, el("tr", {}, ...ths)),
    tbody,
  );

  function render(): void {
    const col = o.columns[active];
    const get = col.value!;
    const dir = desc ? -1 : 1;
    const tb = o.tiebreak ?? (() => 0);
    const sorted = [...rows].sort((a, b) => {
      const va = get(a);
      const vb = get(b);
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return tb(a, b);
    });
    ths.forEach((th, i) => th.setAttribute("aria-sort", i === active ? (desc ? "descending" : "ascending") : "none"));
    tbody.replaceChildren(
      ...sorted.slice(0, max).map((r) => {
        const tr = el("tr", o.rowAttrs(r), ...o.columns.map((c) => c.cell(r)));
        o.onRow?.(r, tr);
        return tr;
      }),
    );
    more.hidden = rows.length <= max;
    more.textContent = `Showing ${max} of ${count(rows.length)} rows.`;
  }

  render();
  return {
    element: el("div", { class: "table-wrap" }, table, more),
    table,
    setRows(r: R[]) {
      rows = r;
      render();
    },
  };
}

/** A numeric cell. */
export function numCell(text: string, attrs: Attrs = {}): HTMLTableCellElement {
  return el("td", { class: "num", ...attrs }, text);
}

/** A share cell with a bar behind the number (share in %, 0..100). */
export function barCell(text: string, share: number, attrs: Attrs = {}, cls = "pct"): HTMLTableCellElement {
  const td = el("td", { class: `num ${cls}`, ...attrs }, text);
  td.style.setProperty("--share", `${Math.max(0, Math.min(100, share)).toFixed(2)}%`);
  return td;
}

export function fnCell(name: string): HTMLTableCellElement {
  return el("td", { class: "fn", title: name }, name);
}

/** A file:line cell, the path shortened from the left. */
export function locCell(file: string, line: number): HTMLTableCellElement {
  const loc = file ? `${file}:${line}` : "–";
  // dir=ltr isolates the path from the cell's rtl (which only moves the ellipsis to the left).
  return el("td", { class: "loc", title: loc }, el("span", { dir: "ltr" }, loc));
}

export const locKey = (r: { file: string; line: number }) => `${r.file}:${String(r.line).padStart(9, "0")}`;

/* A table row that, clicked or on Enter, highlights its function in a
 * flame graph and shows the name in that graph's search box. */
export function highlightOnPick<R extends { name: string }>(
  search: HTMLInputElement,
  graph: { setSearch(q: string): void },
): (r: R, tr: HTMLTableRowElement) => void {
  return (r, tr) => {
    const pick = () => {
      search.value = r.name;
      graph.setSearch(r.name);
    };
    tr.addEventListener("click", pick);
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter") pick();
    });
  };
}
