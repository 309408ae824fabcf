import { lstat, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { SandboxError } from "./errors.ts";

/** What `USER name[:group]` means inside one root filesystem. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Supplementary groups: those of /etc/group that list the user (only when no group was given). */
  additionalGids: number[];
  /** The passwd entry's name, when one matched. */
  name?: string;
  /** The passwd entry's home directory, `/` otherwise. */
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const MAX_ID = 2147483647;

/**
 * Resolves `path` inside `root` following symlinks as if `root` were `/`:
 * an image's /etc/passwd that links to /x reads `<root>/x`, never the host's.
 */
export async function resolveInRoot(root: string, path: string): Promise<string> {
  let pending = path.split("/").filter((s) => s !== "" && s !== ".");
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const full = join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await lstat(full)).isSymbolicLink();
    } catch {
      // missing: the rest is taken literally
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > 40) throw Object.assign(new Error(`too many levels of symbolic links: ${path}`), { code: "ELOOP" });
    const target = await readlink(full);
    if (target.startsWith("/")) resolved.length = 0;
    pending = [...target.split("/").filter((s) => s !== "" && s !== "."), ...pending];
  }
  return join(root, ...resolved);
}

/** A file of the root filesystem; one that cannot be opened counts as absent (as BuildKit treats it). */
async function readRootFile(root: string, path: string): Promise<string | undefined> {
  try {
    return await readFile(await resolveInRoot(root, path), "utf8");
  } catch {
    return undefined;
  }
}

/** Go's strconv.Atoi on the digits we accept; undefined when not a number. */
function atoi(s: string): number | undefined {
  return /^[+-]?\d+$/.test(s) ? Number(s) : undefined;
}

function lines(text: string): string[][] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

export function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((f) => ({
    name: f[0] ?? "",
    uid: atoi(f[2] ?? "") ?? 0,
    gid: atoi(f[3] ?? "") ?? 0,
    home: f[5] ?? "",
  }));
}

export function parseGroup(text: string): GroupEntry[] {
  return lines(text).map((f) => ({
    name: f[0] ?? "",
    gid: atoi(f[2] ?? "") ?? 0,
    members: (f[3] ?? "").split(",").filter((m) => m !== ""),
  }));
}

function parseNumericId(s: string): number | undefined {
  if (s === "root") return 0;
  return /^\d+$/.test(s) ? Number(s) : undefined;
}

function rangeError(): never {
  throw new SandboxError("USER_NOT_FOUND", `uids and gids must be in range 0-${MAX_ID}`);
}

/**
 * Resolves a Dockerfile `USER` value (`name`, `uid`, `name:group`, `uid:gid`;
 * empty means root) against the root filesystem's /etc/passwd and
 * /etc/group, exactly as BuildKit does:
 * - `uid:gid` (both numeric, or `root`) is taken as is, without reading the files;
 * - a user name must exist in /etc/passwd ("unable to find user x: no matching
 *   entries in passwd file"); a numeric uid without an entry gets gid 0;
 * - the primary group comes from the passwd entry unless a group is given;
 * - supplementary groups are the /etc/group entries listing the user by name,
 *   only when no group was given.
 */
export async function resolveUser(rootfs: string, userSpec: string): Promise<ResolvedUser> {
  const isDefault = userSpec === "";
  const spec = isDefault ? "0" : userSpec;

  // BuildKit's fast path: both ids numeric.
  const colon = spec.indexOf(":");
  if (colon >= 0) {
    const uid = parseNumericId(spec.slice(0, colon));
    const gid = parseNumericId(spec.slice(colon + 1));
    if (uid !== undefined && gid !== undefined && uid <= 0xffffffff && gid <= 0xffffffff) {
      return { uid, gid, additionalGids: [], home: "/" };
    }
  }

  const fields = spec.split(":");
  const userArg = fields[0] ?? "";
  const groupArg = fields[1] ?? "";
  const uidArg = atoi(userArg);
  const gidArg = atoi(groupArg);

  try {
    const passwdText = await readRootFile(rootfs, "/etc/passwd");
    const groupText = await readRootFile(rootfs, "/etc/group");

    const user: ResolvedUser = { uid: 0, gid: 0, additionalGids: [], home: "/" };
    const users = passwdText === undefined
      ? []
      : parsePasswd(passwdText).filter((u) => (uidArg === undefined ? u.name === userArg : u.uid === uidArg));
    let matchedName = "";
    const first = users[0];
    if (first) {
      matchedName = first.name;
      user.uid = first.uid;
      user.gid = first.gid;
      user.home = first.home;
      user.name = first.name;
    } else if (userArg !== "") {
      if (uidArg === undefined) {
        throw new SandboxError("USER_NOT_FOUND", `unable to find user ${userArg}: no matching entries in passwd file`, {
          hint: `add the user to the image (e.g. RUN adduser ${userArg}) or use a numeric uid`,
        });
      }
      if (uidArg < 0 || uidArg > MAX_ID) rangeError();
      user.uid = uidArg;
    }

    if (groupArg !== "" || matchedName !== "") {
      const groups = groupText === undefined
        ? []
        : parseGroup(groupText).filter((g) => {
            if (groupArg === "") return g.members.includes(matchedName);
            return gidArg === undefined ? g.name === groupArg : g.gid === gidArg;
          });
      if (groupArg !== "") {
        const g = groups[0];
        if (g) {
          user.gid = g.gid;
        } else {
          if (gidArg === undefined) {
            throw new SandboxError("USER_NOT_FOUND", `unable to find group ${groupArg}: no matching entries in group file`, {
              hint: `add the group to the image (e.g. RUN addgroup ${groupArg}) or use a numeric gid`,
            });
          }
          if (gidArg < 0 || gidArg > MAX_ID) rangeError();
          user.gid = gidArg;
        }
      } else {
        user.additionalGids = groups.map((g) => g.gid);
      }
    }
    return user;
  } catch (e) {
    // an image without /etc/passwd runs the default user as root
    if (isDefault) return { uid: 0, gid: 0, additionalGids: [], home: "/" };
    throw e;
  }
}
