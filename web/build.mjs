// `npm run build`: bundles src/ into dist/ (index.html, app.js, style.css), the folder chat-server
// serves at `/` (its WEB_DIR). Everything the page needs is in there: it loads nothing else.

import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
const dist = join(here, "dist");

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: { app: join(src, "main.js"), style: join(src, "style.css") },
  outdir: dist,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  logLevel: "warning",
});
await copyFile(join(src, "index.html"), join(dist, "index.html"));
console.log(`built ${dist}`);
