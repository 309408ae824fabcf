import { spawn, type ChildProcess } from "node:child_process";
import { lstat, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { UserError } from "./errors.ts";

/**
 * `--ssh` values: `default` (the caller's $SSH_AUTH_SOCK), `ID=SOCKET`, or
 * `ID=KEYFILE[,KEYFILE]` (an ssh-agent of our own holding those keys, stopped
 * with the build).
 */
export class SshAgents {
  private readonly sockets = new Map<string, string>();
  private readonly agents: ChildProcess[] = [];
  private readonly dirs: string[] = [];

  static async start(values: readonly string[]): Promise<SshAgents> {
    const agents = new SshAgents();
    try {
      for (const value of values) await agents.add(value);
    } catch (error) {
      await agents.stop();
      throw error;
    }
    return agents;
  }

  socket(id: string): string | undefined {
    return this.sockets.get(id);
  }

  async stop(): Promise<void> {
    for (const agent of this.agents) agent.kill();
    await Promise.all(this.dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  }

  private async add(value: string): Promise<void> {
    const equals = value.indexOf("=");
    const id = equals < 0 ? value : value.slice(0, equals);
    const paths = equals < 0 ? [] : value.slice(equals + 1).split(",").filter(Boolean).map((path) => resolve(path));
    if (id === "") throw new UserError(`--ssh "${value}": the id is missing`, "write --ssh default or --ssh ID=SOCKET|KEYFILE");
    if (paths.length === 0) {
      const socket = process.env.SSH_AUTH_SOCK;
      if (!socket) throw new UserError(`--ssh ${id}: no agent to forward: SSH_AUTH_SOCK is not set`, "start ssh-agent, or pass key files: --ssh default=~/.ssh/id_ed25519");
      this.sockets.set(id, socket);
      return;
    }
    const first = await lstat(paths[0] as string).catch(() => undefined);
    if (!first) throw new UserError(`--ssh ${id}: ${paths[0]} does not exist`);
    if (first.isSocket()) {
      this.sockets.set(id, paths[0] as string);
      return;
    }
    this.sockets.set(id, await this.agentWithKeys(paths));
  }

  private async agentWithKeys(keys: string[]): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), "tsbuild-ssh-"));
    this.dirs.push(dir);
    const socket = join(dir, "agent.sock");
    const agent = spawn("ssh-agent", ["-D", "-a", socket], { stdio: "ignore" });
    this.agents.push(agent);
    await new Promise<void>((resolveStarted, reject) => {
      agent.once("error", () => reject(new UserError("--ssh with key files needs ssh-agent", "install the Debian package openssh-client")));
      const poll = setInterval(() => {
        lstat(socket).then(
          () => {
            clearInterval(poll);
            resolveStarted();
          },
          () => undefined,
        );
      }, 10);
    });
    for (const key of keys) {
      const code = await new Promise<number | null>((done) => {
        const add = spawn("ssh-add", [key], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, SSH_AUTH_SOCK: socket } });
        add.once("error", () => done(-1));
        add.once("exit", done);
      });
      if (code !== 0) throw new UserError(`--ssh: cannot load the key ${key} into an agent`, "check the file (a private key without a passphrase)");
    }
    return socket;
  }
}
