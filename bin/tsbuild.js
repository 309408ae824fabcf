#!/usr/bin/env node
// The CLI is bundled to dist/ by `npm run build` (run by `npm ci`/`npm install`).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const bundle = fileURLToPath(new URL("../dist/tsbuild.js", import.meta.url));
if (!existsSync(bundle)) {
  process.stderr.write("tsbuild: the CLI is not built yet: run `npm run build` in the tsbuild checkout\n");
  process.exit(70);
}
await import(bundle);
