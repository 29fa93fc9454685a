import { defineConfig } from "vite";

// The C server serves dist/index.html for "/" and "/runs/{id}" and files under
// /assets/, so asset URLs must be absolute and live in that one folder.
export default defineConfig({
  base: "/",
  build: { outDir: "dist", assetsDir: "assets", emptyOutDir: true },
  server: {
    // `npm run dev` talks to a server (real or e2e/fixture-server.mjs) on 8000.
    proxy: { "/api": process.env.VMPV_API ?? "http://127.0.0.1:8000" },
  },
});
