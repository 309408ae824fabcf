/**
 * ARG scoping, as Docker defines it: ARGs before the first FROM are global and
 * usable in FROM lines; a stage sees an ARG only after declaring it (a bare
 * `ARG NAME` takes the global value); `--build-arg` overrides defaults; the
 * proxy variables are predefined; ENV of the same name wins over an ARG.
 */

export const PROXY_ARGS = [
  "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
  "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
];

export class BuildArgs {
  /** --build-arg values that some ARG (or a predefined proxy variable) used. */
  private readonly used = new Set<string>();

  constructor(private readonly given: ReadonlyMap<string, string>) {}

  /** The value an `ARG name[=default]` takes: the --build-arg, else the default (already expanded), else the global value. */
  declare(name: string, defaultValue: string | undefined, globalValue?: string): string | undefined {
    const given = this.given.get(name);
    if (given !== undefined) {
      this.used.add(name);
      return given;
    }
    return defaultValue ?? globalValue;
  }

  /** Proxy variables given with --build-arg: in RUN's environment without an ARG, and kept out of history. */
  proxies(): Map<string, string> {
    const proxies = new Map<string, string>();
    for (const name of PROXY_ARGS) {
      const value = this.given.get(name);
      if (value !== undefined) {
        proxies.set(name, value);
        this.used.add(name);
      }
    }
    return proxies;
  }

  /** --build-arg names no ARG consumed (Docker warns about them). */
  unused(): string[] {
    return [...this.given.keys()].filter((name) => !this.used.has(name) && !PROXY_ARGS.includes(name)).sort();
  }
}
