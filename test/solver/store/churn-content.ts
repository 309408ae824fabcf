import { createHash } from "node:crypto";

/** Deterministic content of file `index` of a churn layer, so a checker can verify a whole layer from its id. */
export function churnFileContent(seed: string, index: number): string {
  return createHash("sha256").update(`${seed}/${index}`).digest("hex").repeat(64);
}
