import { lstatSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StoreError, createWhiteout, isWhiteout } from "../../../src/solver/store/index.ts";
import { freshDir } from "./helpers.ts";

describe("whiteouts", () => {
  it("are character devices 0:0 made with mknod", async () => {
    const path = join(freshDir("whiteout"), "deleted");
    await createWhiteout(path);
    const stats = lstatSync(path);
    expect(stats.isCharacterDevice()).toBe(true);
    expect(stats.rdev).toBe(0);
    expect(isWhiteout(stats)).toBe(true);
  });

  it("are hard links to a template when one is given, recreated if it is missing", async () => {
    const dir = freshDir("whiteout-template");
    const template = join(dir, "template");
    await createWhiteout(join(dir, "a"), { template });
    await createWhiteout(join(dir, "b"), { template });
    expect(lstatSync(join(dir, "a")).ino).toBe(lstatSync(template).ino);
    expect(lstatSync(template).nlink).toBe(3);
    rmSync(template);
    await createWhiteout(join(dir, "c"), { template });
    expect(isWhiteout(lstatSync(join(dir, "c")))).toBe(true);
  });

  it("are not confused with other files", () => {
    const file = join(freshDir("not-whiteout"), "file");
    writeFileSync(file, "");
    expect(isWhiteout(lstatSync(file))).toBe(false);
    expect(isWhiteout(lstatSync("/dev/null"))).toBe(false); // char device 1:3
  });

  it("report a path that already exists", async () => {
    const file = join(freshDir("whiteout-exists"), "file");
    writeFileSync(file, "");
    await expect(createWhiteout(file)).rejects.toBeInstanceOf(StoreError);
    await expect(createWhiteout(file)).rejects.toThrow(/cannot create the whiteout .*: mknod: .*File exists/);
    await expect(createWhiteout(file, { template: join(file, "..", "t") })).rejects.toMatchObject({ code: "EEXIST" });
  });
});
