import type { ChownSpec } from "../llb/index.ts";
import { BuildStepError } from "./errors.ts";

/** Reads a file of the destination image, if it exists. */
export type ImageFileReader = (path: string) => Promise<Buffer | undefined>;

/**
 * Resolves `--chown=user[:group]` to numeric ids with the destination
 * image's /etc/passwd and /etc/group, as Docker does.
 */
export async function resolveOwner(spec: ChownSpec, readFile: ImageFileReader): Promise<{ uid: number; gid: number }> {
  const passwd = () => readDatabase(readFile, "/etc/passwd");
  let uid: number;
  let primaryGid: number | undefined;
  if (/^\d+$/.test(spec.user)) {
    uid = Number(spec.user);
  } else {
    const entry = (await passwd()).find((fields) => fields[0] === spec.user);
    if (!entry) {
      throw new BuildStepError(`unable to find user ${spec.user}: no matching entries in passwd file`, {
        hint: "create the user in an earlier step, or use numeric ids, e.g. --chown=1000:1000",
      });
    }
    uid = Number(entry[2]);
    primaryGid = Number(entry[3]);
  }
  if (spec.group === undefined) return { uid, gid: primaryGid ?? uid };
  if (/^\d+$/.test(spec.group)) return { uid, gid: Number(spec.group) };
  const group = (await readDatabase(readFile, "/etc/group")).find((fields) => fields[0] === spec.group);
  if (!group) {
    throw new BuildStepError(`unable to find group ${spec.group}: no matching entries in group file`, {
      hint: "create the group in an earlier step, or use a numeric gid",
    });
  }
  return { uid, gid: Number(group[2]) };
}

async function readDatabase(readFile: ImageFileReader, path: string): Promise<string[][]> {
  const content = await readFile(path);
  if (!content) return [];
  return content
    .toString("utf8")
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("#"))
    .map((line) => line.split(":"));
}
