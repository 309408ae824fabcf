// Bundles the CLI so start-up does not pay for module resolution of many files.
import { build } from "esbuild";
import { mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";

const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));

// Chunk names carry content hashes: drop the previous build's so dist/ holds one version.
mkdirSync("dist", { recursive: true });
for (const name of readdirSync("dist", { withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => entry.name)) {
  if (/\.js(\.map)?$/.test(name)) rmSync(`dist/${name}`);
}

await build({
  entryPoints: { tsbuild: "src/cli/entry.ts" },
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: true,
  define: { __TSBUILD_VERSION__: JSON.stringify(version) },
  // Native addons and CommonJS-only packages stay outside the bundle.
  external: ["zstd-napi"],
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: "warning",
});
