// Build: esbuild bundles the extension (CommonJS, `vscode` external), the webview script
// (browser IIFE), the in-VS-Code test module when test/suite/index.ts exists, and the node-level
// tests in src/unit/. Flags: --production (minify, no source maps), --watch.
import * as esbuild from "esbuild";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const production = process.argv.includes("--production");
const watch = process.argv.includes("--watch");

const node = {
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  external: ["vscode"],
  sourcemap: production ? false : "linked",
  minify: production,
  logLevel: "warning",
  absWorkingDir: root,
};

const builds = [
  { ...node, entryPoints: ["src/extension.ts"], outfile: "out/extension.js" },
  {
    ...node,
    platform: "browser",
    format: "iife",
    target: "es2022",
    entryPoints: ["src/webview/main.ts"],
    outfile: "out/webview.js",
  },
];

if (existsSync(join(root, "test/suite/index.ts"))) {
  builds.push({ ...node, entryPoints: ["test/suite/index.ts"], outfile: "out/test/index.js" });
}

if (!production) {
  const unit = readdirSync(join(root, "src/unit"))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => `src/unit/${f}`);
  if (unit.length > 0) {
    // Unit tests load their npm dependencies (playwright-core, vscode-jsonrpc) from node_modules.
    builds.push({ ...node, entryPoints: unit, outdir: "out/unit", sourcemap: "inline", packages: "external" });
  }
}

// Only out/unit is cleared (so a deleted test does not linger); the rest is overwritten in place,
// which keeps out/ usable for a test run going on at the same time.
if (!production) rmSync(join(root, "out/unit"), { recursive: true, force: true });
if (watch) {
  for (const b of builds) await (await esbuild.context(b)).watch();
  console.log("esbuild: watching");
} else {
  await Promise.all(builds.map((b) => esbuild.build(b)));
}
