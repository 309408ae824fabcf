import { readFile } from "node:fs/promises";
import { UserError } from "./errors.ts";

/** Reads a text file named on the command line; `-` is standard input. */
export async function readTextInput(path: string, what: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = path === "-" ? await readStdin() : await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new UserError(`cannot read ${what} "${path}": no such file`, "point to it with -f PATH");
    if (code === "EISDIR") throw new UserError(`cannot read ${what} "${path}": it is a directory`, "pass the file, e.g. -f path/Dockerfile");
    if (code === "EACCES") throw new UserError(`cannot read ${what} "${path}": permission denied`);
    throw error;
  }
  return new TextDecoder("utf-8", { fatal: false, ignoreBOM: true }).decode(bytes);
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
