/**
 * Parser throughput: parses a generated 20,000-line Dockerfile repeatedly and
 * prints lines per second and peak memory. Target: at least 200,000 lines/s.
 * Run: npm run bench:parse
 */
import { parseDockerfile } from "../src/parser/index.ts";
import { generateDockerfile } from "./generate-dockerfile.ts";

const LINES = 20_000;
const ROUNDS = 20;
const TARGET_LINES_PER_SECOND = 200_000;

const text = generateDockerfile(LINES);
const lineCount = text.split("\n").length - 1;
const gc = (globalThis as { gc?: () => void }).gc;

// Warm up the JIT, then measure each round on its own.
for (let i = 0; i < 3; i++) parseDockerfile(text);
gc?.();
const heapBefore = process.memoryUsage().heapUsed;
let peakHeap = heapBefore;
const times: number[] = [];
let instructions = 0;
for (let round = 0; round < ROUNDS; round++) {
  const start = process.hrtime.bigint();
  const dockerfile = parseDockerfile(text);
  times.push(Number(process.hrtime.bigint() - start) / 1e9);
  instructions = dockerfile.instructions.length;
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)] as number;
const linesPerSecond = lineCount / median;
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

console.log(`parse: ${lineCount} lines, ${instructions} instructions, ${(text.length / 1024).toFixed(0)} KiB`);
console.log(`parse: median ${(median * 1000).toFixed(1)} ms (best ${((times[0] as number) * 1000).toFixed(1)} ms) over ${ROUNDS} rounds`);
console.log(`parse: ${Math.round(linesPerSecond).toLocaleString("en")} lines/s (target ≥ ${TARGET_LINES_PER_SECOND.toLocaleString("en")}): ${(linesPerSecond / TARGET_LINES_PER_SECOND).toFixed(2)}× target`);
console.log(`parse: peak heap ${mib(peakHeap)} MiB (+${mib(peakHeap - heapBefore)} MiB over baseline), peak RSS ${mib(process.resourceUsage().maxRSS * 1024)} MiB`);
if (linesPerSecond < TARGET_LINES_PER_SECOND) process.exitCode = 1;
