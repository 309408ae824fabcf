import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runProgram } from "../../../src/runtime/network/programs.ts";

const here = dirname(fileURLToPath(import.meta.url));
const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

describe("running the network's programs through the launcher", () => {
  it("passes arguments, the environment and stdin as they are, and returns stdout, stderr and the exit status", async () => {
    const result = await runProgram("/bin/sh", ["-c", 'printf "%s|%s|" "$FOO" "$(cat)"; printf "[%s]" "$@"; echo oops >&2; exit 3', "sh", "a b", "it's", "x\ny", ""], {
      env: { PATH, FOO: `a'b"c $HOME \\` },
      input: "in\nput",
    });
    expect(result.stdout).toBe(`a'b"c $HOME \\|in\nput|[a b][it's][x\ny][]`);
    expect(result.stderr).toBe("oops\n");
    expect(result.code).toBe(3);
    expect(result.signal).toBeNull();
    expect(result.error).toBeUndefined();
  });

  it("gives the program exactly the environment asked for", async () => {
    const result = await runProgram("env", [], { env: { PATH, ONLY: "this" } });
    expect(result.stdout.split("\n").filter(Boolean).sort()).toEqual(["ONLY=this", `PATH=${PATH}`]);
  });

  it("says ENOENT for a program that is not installed", async () => {
    const result = await runProgram("tsbuild-no-such-program", [], { env: { PATH } });
    expect(result.error?.code).toBe("ENOENT");
    expect(result.code).toBeNull();
  });

  it("kills a program that takes too long", async () => {
    const started = Date.now();
    const marker = `${(Math.random() * 1000 + 100).toFixed(3)}`;
    const result = await runProgram("/bin/sleep", [marker], { timeoutMs: 200 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.error?.message).toBe("no answer after 200 ms");
    expect(result.signal).toBe("SIGKILL");
    expect(spawnSync("pgrep", ["-f", `sleep ${marker}`]).status).toBe(1);
  });

  it("keeps concurrent programs apart", async () => {
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => runProgram("/bin/sh", ["-c", `sleep 0.0${i % 5}; echo ${i}; exit ${i}`])));
    results.forEach((result, i) => {
      expect(result.stdout).toBe(`${i}\n`);
      expect(result.code).toBe(i);
    });
  });

  it("does not keep the process alive once its programs are done", () => {
    const script = `import { runProgram } from ${JSON.stringify(join(here, "../../../src/runtime/network/programs.ts"))};\nconst r = await runProgram("/bin/echo", ["done"]);\nprocess.stdout.write(r.stdout);\n`;
    const started = Date.now();
    const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000 });
    expect(child.stdout).toBe("done\n");
    expect(child.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
