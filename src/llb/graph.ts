import { canonicalJson, sha256 } from "./digest.ts";
import type { Op, Vertex } from "./types.ts";

/** Collects vertices; identical ops on identical inputs become one vertex. */
export class GraphBuilder {
  readonly vertices = new Map<string, Vertex>();

  add(op: Op, inputs: (string | null)[], meta: { name: string; location?: Vertex["location"]; ignoreCache?: boolean }): string {
    const digest = sha256(canonicalJson({ op, inputs }));
    const existing = this.vertices.get(digest);
    if (existing) {
      if (meta.ignoreCache) existing.ignoreCache = true;
      return digest;
    }
    this.vertices.set(digest, { digest, op, inputs, ...meta });
    return digest;
  }

  /** The vertices `root` depends on (itself included), inputs before their users. */
  ancestry(root: string | null): Vertex[] {
    const ordered: Vertex[] = [];
    const seen = new Set<string>();
    const visit = (digest: string | null) => {
      if (digest === null || seen.has(digest)) return;
      seen.add(digest);
      const vertex = this.vertices.get(digest);
      if (!vertex) throw new Error(`graph has no vertex ${digest}`);
      for (const input of vertex.inputs) visit(input);
      ordered.push(vertex);
    };
    visit(root);
    return ordered;
  }
}
