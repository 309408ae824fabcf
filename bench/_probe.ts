import { createBuildKit } from "./build-cache/buildkit.ts";
import { run } from "./build-cache/run.ts";
import { mkdir } from "node:fs/promises";
const wd = "/tmp/ro-probe";
await mkdir(wd, { recursive: true });
const { builder, daemon } = await createBuildKit(wd, console.log, { network: "bridge" });
console.log(daemon);
try {
  for (const ctx of ["/tmp/ro-try/ctx", "/tmp/ro-try/ctx"]) {
    const c = builder.buildCommand(ctx, undefined, { noCache: true }); c.args.splice(1, 0, "--network=none"); const r = await run(c);
    console.log(ctx, r.code, r.ms.toFixed(0), r.output.slice(-1500));
  }
  const r = await run({ ...builder.buildCommand("/tmp/ro-try/ctx", undefined, { noCache: true }) });
  console.log(r.code);
} finally { await builder.close(); }
