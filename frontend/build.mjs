// Bundle the dashboard page into ../meshctl/dashboard/static/ (committed: a clone needs no npm).
//   node build.mjs           write the bundle and static/build.json (source hashes)
//   node build.mjs --check   build in memory; exit 1 if the committed bundle differs
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "meshctl", "dashboard", "static");
const check = process.argv.includes("--check");

const bundle = await esbuild.build({
  entryPoints: [join(here, "src", "main.js"), join(here, "src", "style.css")],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["chrome110", "firefox110", "safari16"],
  legalComments: "linked",
  outdir: out,
  entryNames: "[name]",
  write: false,
  logLevel: "warning",
});

const sha = (data) => createHash("sha256").update(data).digest("hex");
const sources = {};
for (const name of ["package.json", "package-lock.json", "build.mjs"]) {
  sources[name] = sha(readFileSync(join(here, name)));
}
for (const name of readdirSync(join(here, "src")).sort()) {
  sources[`src/${name}`] = sha(readFileSync(join(here, "src", name)));
}
const pkg = (name) => JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"))).version;
const files = new Map(bundle.outputFiles.map((f) => [f.path, Buffer.from(f.contents)]));
files.set(join(out, "index.html"), readFileSync(join(here, "src", "index.html")));
const stamp = { esbuild: pkg("esbuild"), cytoscape: pkg("cytoscape"), sources };
files.set(join(out, "build.json"), Buffer.from(JSON.stringify(stamp, null, 1) + "\n"));

if (check) {
  const stale = [];
  for (const [path, data] of files) {
    let old = null;
    try { old = readFileSync(path); } catch { /* missing */ }
    if (!old || !old.equals(data)) stale.push(path);
  }
  if (stale.length) {
    console.error(`stale bundle (run: cd frontend && npm ci && npm run build):\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
  console.log(`bundle up to date (${files.size} files)`);
} else {
  mkdirSync(out, { recursive: true });
  for (const [path, data] of files) writeFileSync(path, data);
  console.log(`wrote ${files.size} files to ${out}`);
}
