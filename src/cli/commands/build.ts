import type { Argv } from "yargs";
import { PROGRESS_MODES, type ProgressMode } from "../progress/index.ts";
import type { RegistryArgs } from "../registry-options.ts";

export interface BuildArgs extends RegistryArgs {
  context: string;
  file?: string;
  tag: string[];
  buildArg: string[];
  target?: string;
  platform?: string;
  output: string[];
  progress: ProgressMode;
  noCache: boolean;
  noCacheFilter: string[];
  buildContext: string[];
  secret: string[];
  ssh: string[];
  allow: string[];
  keepCacheMounts: boolean;
  runtime: "tsbuild" | "runc" | "crun";
  dryRun: boolean;
  push: boolean;
  load: boolean;
  pull: boolean;
  label: string[];
  annotation: string[];
  format: "json" | "dot";
  root?: string;
}

/** A repeatable flag taking one value each time (yargs arrays are otherwise greedy and would swallow the context). */
const list = {
  type: "string",
  nargs: 1,
  default: [] as string[],
  coerce: (value: string | string[]) => (Array.isArray(value) ? value : [value]),
} as const;

export const buildCommand = {
  command: "build <context>",
  describe: "Build an image from a Dockerfile",
  builder: (yargs: Argv) =>
    yargs
      .positional("context", { type: "string", demandOption: true, describe: "The build context: a directory, - (a tar archive on standard input), an http(s) tarball URL or a git URL (URL#ref:subdir)" })
      .option("file", { alias: "f", type: "string", describe: "The Dockerfile (default: CONTEXT/Dockerfile; - for standard input)" })
      .option("tag", { alias: "t", ...list, describe: "Name the image (name:tag): stored in the local image store when no -o is given, pushed with --push, recorded in image outputs" })
      .option("build-arg", { ...list, describe: "Set a build argument: KEY=VALUE, or KEY to take it from the environment" })
      .option("target", { type: "string", describe: "The stage to build (default: the last one)" })
      .option("platform", { type: "string", describe: "The target platform, e.g. linux/amd64 (default: this machine's)" })
      .option("output", {
        alias: "o",
        ...list,
        describe:
          "Where the result goes: type=image[,name=N][,push=true] (the local image store) | type=registry[,name=N] | type=docker,dest=FILE.tar | " +
          "type=oci,dest=FILE.tar | type=oci-layout,dest=DIR | type=local,dest=DIR | type=tar,dest=FILE (a bare DIR means type=local, - a tar on standard output). " +
          "Image outputs take compression=gzip|zstd|uncompressed, compression-level=N, force-compression=true, annotation.KEY=VALUE",
      })
      .option("push", { type: "boolean", default: false, describe: "Push the image to its registry (shorthand for -o type=registry)" })
      .option("load", { type: "boolean", default: false, describe: "Store the image in the local image store (shorthand for -o type=image)" })
      .option("pull", { type: "boolean", default: false, describe: "Ask the registry for base images even when they are in the local image store" })
      .option("label", { ...list, describe: "Add a label to the image: KEY=VALUE" })
      .option("annotation", { ...list, describe: "Add an annotation to the image manifest: [manifest:]KEY=VALUE" })
      .option("progress", { choices: PROGRESS_MODES, default: "auto" as ProgressMode, describe: "Progress output (auto: tty on a terminal, else plain)" })
      .option("no-cache", { type: "boolean", default: false, describe: "Run every step, ignoring cached results; cache mounts start empty (see --keep-cache-mounts)" })
      .option("no-cache-filter", { ...list, describe: "Ignore cached results for the steps of these stages" })
      .option("build-context", { ...list, describe: "A named context: NAME=DIR or NAME=oci-layout://PATH[:TAG], usable in FROM and COPY --from" })
      .option("secret", { ...list, describe: "A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (never stored in the image or cache)" })
      .option("ssh", { ...list, describe: "An SSH agent for RUN --mount=type=ssh: default (uses $SSH_AUTH_SOCK), ID=SOCKET or ID=KEYFILE[,KEYFILE]" })
      .option("allow", { ...list, describe: "Allow an entitlement: security.insecure (RUN --security=insecure), device (RUN --device)" })
      .option("keep-cache-mounts", { type: "boolean", default: false, describe: "With --no-cache: rerun every step but keep the content of cache mounts" })
      .option("runtime", { choices: ["tsbuild", "runc", "crun"] as const, default: "tsbuild" as const, describe: "Run RUN steps with tsbuild's sandbox or hand the same spec to runc/crun" })
      .option("dry-run", { type: "boolean", default: false, describe: "Print the build graph instead of building" })
      .option("format", { choices: ["json", "dot"] as const, default: "json" as const, describe: "The --dry-run output format" })
      .example("$0 build -t app:1 .", "Build ./Dockerfile and store it as app:1")
      .example("$0 build -t registry.example.com/app:1 --push .", "Build and push")
      .example("$0 build -o type=oci,dest=app.tar .", "Build ./Dockerfile and write an OCI archive")
      .example("$0 build --dry-run --format dot . | dot -Tsvg > graph.svg", "Draw the build graph"),
  // yargs adds the camelCase names (noCache for --no-cache) at run time; its types do not show them.
  handler: async (args: object) => {
    const { runBuild } = await import("./build-run.ts");
    process.exitCode = await runBuild(args as BuildArgs);
  },
};
