import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveUser, SandboxError } from "../../src/runtime/index.ts";
import { tempDir } from "./helpers.ts";

function rootfsWith(files: Record<string, string>): string {
  const root = tempDir("tsbuild-users-");
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const passwd = [
  "root:x:0:0:root:/root:/bin/sh",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "app:x:1000:1000:App:/home/app:/bin/sh",
  "# a comment",
  "",
  "second:x:1000:1234::/other:/bin/sh",
  "",
].join("\n");
const group = ["root:x:0:", "daemon:x:1:", "app:x:1000:", "docker:x:999:app,other", "wheel:x:10:root,app", "staff:x:50:"].join("\n");

describe("resolveUser (BuildKit's USER semantics)", () => {
  const root = rootfsWith({ "etc/passwd": passwd, "etc/group": group });

  it("resolves a name to its uid, primary gid, home and the groups that list it", async () => {
    expect(await resolveUser(root, "app")).toEqual({ uid: 1000, gid: 1000, additionalGids: [999, 10], name: "app", home: "/home/app" });
  });

  it("an empty user is root, with root's supplementary groups", async () => {
    expect(await resolveUser(root, "")).toEqual({ uid: 0, gid: 0, additionalGids: [10], name: "root", home: "/root" });
  });

  it("a numeric uid matches the first passwd entry with that uid", async () => {
    expect(await resolveUser(root, "1000")).toEqual({ uid: 1000, gid: 1000, additionalGids: [999, 10], name: "app", home: "/home/app" });
  });

  it("a numeric uid without an entry gets gid 0 and no groups", async () => {
    expect(await resolveUser(root, "4242")).toEqual({ uid: 4242, gid: 0, additionalGids: [], home: "/" });
  });

  it("uid:gid, both numeric, is taken as is without reading the files", async () => {
    const empty = tempDir("tsbuild-users-");
    expect(await resolveUser(empty, "1000:1000")).toEqual({ uid: 1000, gid: 1000, additionalGids: [], home: "/" });
    expect(await resolveUser(empty, "root:root")).toEqual({ uid: 0, gid: 0, additionalGids: [], home: "/" });
  });

  it("name:group takes the group by name or number, and no supplementary groups", async () => {
    expect(await resolveUser(root, "app:staff")).toEqual({ uid: 1000, gid: 50, additionalGids: [], name: "app", home: "/home/app" });
    expect(await resolveUser(root, "app:999")).toEqual({ uid: 1000, gid: 999, additionalGids: [], name: "app", home: "/home/app" });
    expect(await resolveUser(root, "app:5555")).toEqual({ uid: 1000, gid: 5555, additionalGids: [], name: "app", home: "/home/app" });
    expect(await resolveUser(root, "4242:staff")).toEqual({ uid: 4242, gid: 50, additionalGids: [], home: "/" });
  });

  it("fails like Docker for unknown names", async () => {
    await expect(resolveUser(root, "nobody")).rejects.toThrow("unable to find user nobody: no matching entries in passwd file");
    await expect(resolveUser(root, "app:nogroup")).rejects.toThrow("unable to find group nogroup: no matching entries in group file");
    const err = await resolveUser(root, "ghost").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxError);
    expect((err as SandboxError).code).toBe("USER_NOT_FOUND");
  });

  it("an image without /etc/passwd runs as root by default, and fails for names", async () => {
    const scratch = tempDir("tsbuild-users-");
    expect(await resolveUser(scratch, "")).toEqual({ uid: 0, gid: 0, additionalGids: [], home: "/" });
    expect(await resolveUser(scratch, "1234")).toEqual({ uid: 1234, gid: 0, additionalGids: [], home: "/" });
    await expect(resolveUser(scratch, "app")).rejects.toThrow("unable to find user app: no matching entries in passwd file");
  });

  it("reads /etc/passwd through symlinks inside the root, never the host's", async () => {
    const root2 = rootfsWith({ "data/passwd": "me:x:77:88::/me:/bin/sh\n", "data/group": "" });
    mkdirSync(join(root2, "etc"));
    symlinkSync("/data/passwd", join(root2, "etc", "passwd"));
    symlinkSync("../../../../../../etc/group", join(root2, "etc", "group"));
    expect(await resolveUser(root2, "me")).toEqual({ uid: 77, gid: 88, additionalGids: [], name: "me", home: "/me" });
    // the group link climbs above the root: it resolves to <root>/etc/group (itself: a loop), never the host's /etc/group
    await expect(resolveUser(root2, "me:root")).rejects.toThrow("unable to find group root: no matching entries in group file");
  });
});
