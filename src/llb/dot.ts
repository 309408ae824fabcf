import type { Vertex } from "./types.ts";

/** Graphviz text for a graph: one node per vertex, edges from inputs to users. */
export function toDot(vertices: readonly Vertex[], root: string | null): string {
  const id = (digest: string) => `"${digest.slice(7, 19)}"`;
  const lines = ["digraph build {", "  rankdir=BT;", '  node [shape=box, fontname="monospace"];'];
  for (const vertex of vertices) {
    const label = `${vertex.name}\\n${vertex.op.type} ${vertex.digest.slice(7, 19)}`;
    const style = vertex.digest === root ? ", style=bold" : "";
    lines.push(`  ${id(vertex.digest)} [label="${label.replace(/"/g, '\\"')}"${style}];`);
    for (const input of vertex.inputs) if (input) lines.push(`  ${id(input)} -> ${id(vertex.digest)};`);
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}
