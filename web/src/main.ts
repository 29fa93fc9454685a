// Entry point: the server sends this page for "/" and every path under
// "/runs/", so route on the path. Links are plain <a href>s (full page loads):
// the server's SPA fallback makes every route reloadable and shareable.
//
//   /                         list of runs
//   /runs/{id}                one run (?from=&to= a time range; #memory, #growth, #cpu)
//   /runs/{a}/compare/{b}     two runs compared (a = before, b = after)

import "./style.css";
import { renderCompare } from "./compare.ts";
import { el } from "./dom.ts";
import { renderList } from "./list.ts";
import { renderRun } from "./run.ts";

const app = document.getElementById("app")!;
const path = location.pathname.replace(/\/+$/, "") || "/";
const run = /^\/runs\/([^/]+)$/.exec(path);
const compare = /^\/runs\/([^/]+)\/compare\/([^/]+)$/.exec(path);

if (path === "/") void renderList(app);
else if (run) void renderRun(app, decodeURIComponent(run[1]));
else if (compare) void renderCompare(app, decodeURIComponent(compare[1]), decodeURIComponent(compare[2]));
else
  app.replaceChildren(
    el("div", { class: "error", "data-testid": "error" }, "Page not found."),
    el("p", {}, el("a", { href: "/" }, "← All runs")),
  );
