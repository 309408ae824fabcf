/**
 * Runs the network's programs (unshare, umount, the CNI plugins, iptables).
 *
 * Spawning a program from Node forks the whole Node process: copying (then
 * dropping) the page tables of a build's heap costs 1-3 ms of CPU in the
 * event loop's thread each time, and a RUN step on the default network runs
 * four programs. So they are started by a small shell (a "launcher", one per
 * process, started on first use): Node writes each job (an id and a line of
 * shell) on the launcher's stdin; the launcher forks (cheaply: it is small),
 * reports the job's pid and later its exit status on stdout. Output goes
 * through files in a private directory on tmpfs, reused by the next job.
 *
 * The launcher has a session of its own: a Ctrl-C meant for the build does
 * not kill the programs that undo its network. It exits when Node does (its
 * stdin closes). Without it (it cannot start, or died), programs are
 * spawned directly.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export interface ProgramOptions {
  /** The program's whole environment; default this process's. */
  env?: NodeJS.ProcessEnv;
  /** Written to the program's stdin. */
  input?: string;
  /** SIGKILL after this long; default none. */
  timeoutMs?: number;
}

export interface ProgramOutput {
  /** Exit status; null when it never ran or was killed. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** It could not start (`code` "ENOENT": not installed) or was killed for taking too long. */
  error?: Error & { code?: string };
}

// The launcher: reads "ID SCRIPT" lines; one background subshell per job,
// which runs the script (it ends with exec; its output files are truncated
// first, whatever happens) and reports "p ID PID", then "x ID STATUS". It runs
// in / and exports nothing of its own: a job gets the environment it asks for.
const LAUNCHER = `d=$1
unset PWD OLDPWD
while IFS=' ' read -r id job; do
  {
    (eval "$job") >"$d/$id.out" 2>"$d/$id.err" &
    echo "p $id $!"
    wait $!
    echo "x $id $?"
  } &
done`;

function quote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

function timeoutError(ms: number): Error {
  return new Error(`no answer after ${ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${ms} ms`}`);
}

function notFound(command: string): Error & { code: string } {
  return Object.assign(new Error(`spawn ${command} ENOENT`), { code: "ENOENT" });
}

const resolved = new Map<string, string>();

/** `command` as the kernel will run it: itself when it has a slash, else the first executable of that name in PATH (remembered). */
function resolveCommand(command: string, path: string | undefined): string | undefined {
  const key = `${command}\0${path ?? ""}`;
  const known = resolved.get(key);
  if (known !== undefined) return known;
  const found = searchCommand(command, path);
  if (found !== undefined) resolved.set(key, found);
  return found;
}

function searchCommand(command: string, path: string | undefined): string | undefined {
  const executable = (file: string) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes("/")) return executable(command) ? command : undefined;
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir && executable(join(dir, command))) return join(dir, command);
  }
  return undefined;
}

function readIfThere(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // it has just ended
  }
}

const JOB_DIR_PREFIX = "tsbuild-programs-";

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/** A private directory for the job files, on tmpfs when there is one (they are written and read once). */
function jobDir(): string {
  for (const parent of ["/dev/shm", tmpdir()]) {
    try {
      // what processes killed before their exit handler ran left behind
      for (const name of readdirSync(parent)) {
        const pid = Number(name.slice(JOB_DIR_PREFIX.length).split("-")[0]);
        if (name.startsWith(JOB_DIR_PREFIX) && pid > 0 && !isAlive(pid)) rmSync(join(parent, name), { recursive: true, force: true });
      }
      return mkdtempSync(join(parent, `${JOB_DIR_PREFIX}${process.pid}-`));
    } catch {
      // not there or not writable: the next one
    }
  }
  throw new Error("no directory for the program launcher");
}

interface Job {
  resolve: (output: ProgramOutput) => void;
  /** The job's files, without extension: <dir>/<slot>. */
  base: string;
  pid?: number;
  timer?: NodeJS.Timeout;
  timedOut?: Error;
}

class Launcher {
  readonly #child: ChildProcess;
  readonly #dir: string;
  /** Running jobs by slot: a slot's files are reused by the next job (no files to delete per job). */
  readonly #jobs = new Map<number, Job>();
  readonly #freeSlots: number[] = [];
  #slots = 0;
  #alive = true;

  constructor() {
    this.#dir = jobDir();
    const dir = this.#dir;
    process.once("exit", () => {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // the next launcher removes it (its owner is gone)
      }
    });
    this.#child = spawn("/bin/sh", ["-c", LAUNCHER, "sh", this.#dir], { stdio: ["pipe", "pipe", "ignore"], detached: true, env: {}, cwd: "/" });
    this.#child.on("error", () => this.#stop());
    this.#child.on("exit", () => this.#stop());
    this.#child.stdin?.on("error", () => this.#stop());
    let partial = "";
    this.#child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) this.#onLine(line);
    });
    this.#idle();
  }

  get alive(): boolean {
    return this.#alive;
  }

  run(command: string, args: string[], options: ProgramOptions): Promise<ProgramOutput> {
    const id = this.#freeSlots.pop() ?? this.#slots++;
    const base = join(this.#dir, String(id));
    const env = options.env ?? process.env;
    const exports = Object.entries(env)
      .filter((entry): entry is [string, string] => entry[1] !== undefined && /^[A-Za-z_][A-Za-z0-9_]*$/.test(entry[0]))
      .map(([name, value]) => `${name}=${quote(value)}`);
    const input = options.input === undefined ? "/dev/null" : `${base}.in`;
    let script = `${exports.length > 0 ? `export ${exports.join(" ")}; ` : ""}exec ${[command, ...args].map(quote).join(" ")} <${quote(input)}`;
    try {
      // small files on tmpfs: a synchronous write costs less than a round trip through libuv's thread pool
      if (options.input !== undefined) writeFileSync(input, options.input);
      // the script goes on the launcher's input line, unless a newline is in it
      if (script.includes("\n")) {
        writeFileSync(`${base}.sh`, script);
        script = `. ${quote(`${base}.sh`)}`;
      }
    } catch {
      // the directory went away (a tmp cleaner): this one from here
      this.#freeSlots.push(id);
      return spawnHere(command, args, options);
    }
    return new Promise((resolve) => {
      const job: Job = { resolve, base };
      if (options.timeoutMs !== undefined) {
        const ms = options.timeoutMs;
        job.timer = setTimeout(() => {
          job.timedOut = timeoutError(ms);
          if (job.pid) kill(job.pid);
        }, ms);
      }
      this.#jobs.set(id, job);
      this.#busy();
      if (this.#alive) this.#child.stdin?.write(`${id} ${script}\n`);
      else this.#fail(id, job);
    });
  }

  #onLine(line: string): void {
    const [kind, idText, value] = line.split(" ");
    const id = Number(idText);
    const job = this.#jobs.get(id);
    if (!job) return;
    if (kind === "p") {
      job.pid = Number(value);
      if (job.timedOut) kill(job.pid);
      return;
    }
    if (kind !== "x") return;
    this.#jobs.delete(id);
    if (this.#jobs.size === 0) this.#idle();
    if (job.timer) clearTimeout(job.timer);
    const stdout = readIfThere(`${job.base}.out`);
    const stderr = readIfThere(`${job.base}.err`);
    this.#freeSlots.push(id);
    const killed = job.timedOut !== undefined;
    job.resolve({
      code: killed ? null : Number(value),
      signal: killed ? "SIGKILL" : null,
      stdout,
      stderr,
      ...(job.timedOut ? { error: job.timedOut } : {}),
    });
  }

  #fail(id: number, job: Job): void {
    this.#jobs.delete(id);
    if (job.timer) clearTimeout(job.timer);
    job.resolve({ code: null, signal: null, stdout: "", stderr: "", error: new Error("the program launcher stopped") });
  }

  #stop(): void {
    if (!this.#alive) return;
    this.#alive = false;
    for (const [id, job] of [...this.#jobs]) this.#fail(id, job);
  }

  // An idle launcher must not keep this process alive; one with jobs must.
  #idle(): void {
    this.#child.unref();
    (this.#child.stdout as unknown as { unref?: () => void }).unref?.();
    (this.#child.stdin as unknown as { unref?: () => void }).unref?.();
  }

  #busy(): void {
    this.#child.ref();
    (this.#child.stdout as unknown as { ref?: () => void }).ref?.();
  }
}

let launcher: Launcher | undefined;
let launcherFailed = false;

function currentLauncher(): Launcher | undefined {
  if (launcher?.alive) return launcher;
  if (launcher || launcherFailed) return undefined;
  try {
    launcher = new Launcher();
  } catch {
    launcherFailed = true;
  }
  return launcher;
}

/** Spawns the program from this process: the fallback without a launcher. */
function spawnHere(command: string, args: string[], options: ProgramOptions): Promise<ProgramOutput> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let failure: (Error & { code?: string }) | undefined;
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ["pipe", "pipe", "pipe"], cwd: "/" });
    const ms = options.timeoutMs;
    const timer =
      ms === undefined
        ? undefined
        : setTimeout(() => {
            failure = timeoutError(ms);
            child.kill("SIGKILL");
          }, ms);
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    child.stdin.on("error", () => undefined); // a program that exits without reading its input
    child.on("error", (error) => {
      failure ??= error;
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), ...(failure ? { error: failure } : {}) });
    });
    child.stdin.end(options.input ?? "");
  });
}

let systemPath: string | undefined;

/**
 * This process's PATH plus the system's directories (the network's programs live in sbin
 * directories a user's PATH may lack), computed once.
 */
export function programPath(): string {
  if (systemPath === undefined) {
    const dirs = new Set((process.env.PATH ?? "").split(delimiter).filter(Boolean));
    for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) dirs.add(dir);
    systemPath = [...dirs].join(delimiter);
  }
  return systemPath;
}

/** Runs a program to its end and collects its output; never rejects (see `error`). */
export async function runProgram(command: string, args: string[], options: ProgramOptions = {}): Promise<ProgramOutput> {
  const env = options.env ?? process.env;
  const resolved = resolveCommand(command, env.PATH);
  if (!resolved) return { code: null, signal: null, stdout: "", stderr: "", error: notFound(command) };
  const runner = currentLauncher();
  return runner ? runner.run(resolved, args, options) : spawnHere(resolved, args, options);
}
