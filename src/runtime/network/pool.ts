/**
 * Attachments made ahead of need. Attaching a namespace (unshare, then the
 * bridge plugin with host-local) takes 20-35 ms; a pool attaches the next
 * one while the current user (a RUN step) runs, so that taking one costs
 * nothing. Each attachment serves one user only and is released by it: a
 * namespace is never handed out twice (see README.md, "The pool").
 *
 * Pooled attachments are ordinary attachments: each has its record under
 * <stateDir>/net/ owned by this process, so a process killed with spares
 * leaves nothing that the next clean-up does not release.
 */
import { randomBytes } from "node:crypto";
import { attachDefaultNetwork, type AttachOptions, type NetworkAttachment } from "./attach.ts";

export interface NetworkPoolOptions extends Omit<AttachOptions, "id"> {
  /** Attachments kept ready (attached or attaching) for the next takers; default 1. */
  spares?: number;
  /** A ready attachment nobody took for this long is released (the pool refills at the next take); default 10 s. */
  idleMs?: number;
  /** Starts the attachments' ids; default "pool". */
  idPrefix?: string;
}

interface Spare {
  attaching: Promise<NetworkAttachment>;
  idle?: NodeJS.Timeout;
}

const DEFAULT_IDLE_MS = 10_000;

/** Pools not closed yet: closed when the event loop runs dry (a caller that forgot close()). */
const openPools = new Set<NetworkPool>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Not emitted on process.exit() or a fatal signal: those leave records that the next start releases.
  process.on("beforeExit", () => {
    for (const pool of openPools) void pool.close();
  });
}

export class NetworkPool {
  readonly #options: AttachOptions;
  readonly #spares: Spare[] = [];
  readonly #spareCount: number;
  readonly #idleMs: number;
  readonly #releases = new Set<Promise<void>>();
  readonly #idBase: string;
  readonly #notice: (message: string) => void;
  #made = 0;
  #closed = false;

  constructor(options: NetworkPoolOptions) {
    const { spares, idleMs, idPrefix, ...attach } = options;
    this.#options = { ...attach, id: "" };
    this.#spareCount = Math.max(0, Math.floor(spares ?? 1));
    this.#idleMs = idleMs ?? DEFAULT_IDLE_MS;
    // unique across processes sharing a state root, and short: the id names the namespace file
    this.#idBase = `${idPrefix ?? "pool"}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.#notice = options.onNotice ?? ((message) => void process.stderr.write(`${message}\n`));
    openPools.add(this);
    installExitHook();
  }

  /** Attachments attached or attaching, not taken yet. */
  get spares(): number {
    return this.#spares.length;
  }

  /**
   * An attachment for one user, who releases it: a ready one when there is
   * one, else a new one; either way the pool starts attaching the next in the
   * background. After close(), a new attachment and nothing kept in advance.
   */
  take(): Promise<NetworkAttachment> {
    const spare = this.#spares.shift();
    if (spare?.idle) clearTimeout(spare.idle);
    const attaching = spare?.attaching ?? this.#attach();
    // the next one once this one is attached: two at once would slow down the first, which a step waits for
    void attaching.then(
      () => this.#refill(),
      () => this.#refill(),
    );
    return attaching;
  }

  /**
   * Starts attaching the spares (unless under way) and resolves once they
   * are attached (or failed). For a caller that knows takers will come, e.g.
   * a build that is about to run RUN steps on the default network: its first
   * step then waits for nothing either.
   */
  async warm(): Promise<void> {
    this.#refill();
    await Promise.all(this.#spares.map((spare) => spare.attaching.catch(() => undefined)));
  }

  /**
   * Releases every attachment nobody took (waiting for those still being
   * attached) and stops keeping spares. Release failures become notices: the
   * records stay, and the next start of tsbuild retries them.
   */
  async close(): Promise<void> {
    this.#closed = true;
    openPools.delete(this);
    for (const spare of this.#spares.splice(0)) this.#discard(spare);
    while (this.#releases.size > 0) await Promise.all([...this.#releases]);
  }

  #attach(): Promise<NetworkAttachment> {
    this.#made += 1;
    return attachDefaultNetwork({ ...this.#options, id: `${this.#idBase}-${this.#made}` });
  }

  #refill(): void {
    while (!this.#closed && this.#spares.length < this.#spareCount) {
      const spare: Spare = { attaching: this.#attach() };
      const drop = () => {
        const index = this.#spares.indexOf(spare);
        if (index >= 0) this.#spares.splice(index, 1);
        return index >= 0;
      };
      spare.attaching.then(
        () => {
          if (!this.#spares.includes(spare) || this.#idleMs === Infinity) return;
          spare.idle = setTimeout(() => drop() && this.#discard(spare), this.#idleMs);
          spare.idle.unref();
        },
        // nothing attached (the attach undid itself): the next taker attaches its own, and sees the error if it persists
        () => void drop(),
      );
      this.#spares.push(spare);
    }
  }

  #discard(spare: Spare): void {
    if (spare.idle) clearTimeout(spare.idle);
    const release = spare.attaching
      .then(
        (attachment) => attachment.release(),
        () => undefined, // never attached: nothing to release
      )
      .catch((error: unknown) => this.#notice(`tsbuild: ${(error as Error).message}`))
      .finally(() => this.#releases.delete(release));
    this.#releases.add(release);
  }
}
