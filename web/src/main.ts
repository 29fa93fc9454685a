// Entry point: the server sends this page for "/" and "/runs/{id}", so route
// on the path. Links are plain <a href>s (full page loads): the server's SPA
// fallback makes every route reloadable and shareable.

import "./style.css";
import { el } from "./dom.ts";
import { renderList } from "./list.ts";
import { renderRun } from "./run.ts";

const app = document.getElementById("app")!;
const path = location.pathname.replace(/\/+$/, "") || "/";
const run = /^\/runs\/([^/]+)$/.exec(path);

if (path === "/") void renderList(app);
else if (run) void renderRun(app, decodeURIComponent(run[1]));
else
  app.replaceChildren(
    el("div", { class: "error", "data-testid": "error" }, "Page not found."),
    el("p", {}, el("a", { href: "/" }, "← All runs")),
  );
