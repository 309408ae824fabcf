/**
 * A docker daemon for the external-validator tests: the one already running if `docker info`
 * answers, else a private Debian dockerd 20.10 (scripts/private-dockerd.ts), stopped again.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { answers, DEBIAN_DOCKER, DOCKERD, startPrivateDockerd } from "../../scripts/private-dockerd.ts";

export interface Docker {
  /** Runs the docker client; throws with its stderr when it fails. */
  run(args: readonly string[], options?: { input?: string }): string;
  /** How the daemon was found, for messages. */
  how: string;
  stop(): Promise<void>;
}

export async function startDocker(): Promise<Docker> {
  if (!existsSync(DEBIAN_DOCKER) || !existsSync(DOCKERD)) {
    throw new Error(`docker.io is not installed (no ${existsSync(DEBIAN_DOCKER) ? DOCKERD : DEBIAN_DOCKER}): apt-get install docker.io`);
  }
  if (await answers(process.env.DOCKER_HOST)) {
    return { run: client(process.env), how: `the running daemon (${process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"})`, stop: async () => {} };
  }
  // Not under the tests' TMPDIR: a unix socket's path must be short.
  const daemon = await startPrivateDockerd(mkdtempSync("/tmp/tsbuild-dockerd-"));
  return { run: client({ ...process.env, DOCKER_HOST: daemon.host }), how: `a private dockerd (${daemon.host})`, stop: daemon.stop };
}

function client(env: NodeJS.ProcessEnv): Docker["run"] {
  return (args, options = {}) => {
    const result = spawnSync(DEBIAN_DOCKER, args, { env, encoding: "utf8", timeout: 120_000, ...(options.input !== undefined ? { input: options.input } : {}) });
    if (result.error) throw result.error;
    if (result.status !== 0) throw new Error(`docker ${args.join(" ")} failed (${result.status}): ${result.stderr.trim()}`);
    return result.stdout;
  };
}
