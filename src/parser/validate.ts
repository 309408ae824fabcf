import type { Flag, Instruction, Keyword, Warning } from "./ast.ts";
import { parseHeredocWord } from "./heredoc.ts";
import type { Fail, InstructionOffsets, ParsedLine } from "./instruction-line.ts";
import { MountSpecError, parseMountSpec } from "./mount.ts";
import { ShellExpansionError, expandWord } from "./shell-words.ts";
import type { Span } from "./span.ts";
import { closestMatch } from "./suggest.ts";
import type { EscapeChar } from "./words.ts";

/**
 * Instruction-level checks, as Docker makes them before building: flags each
 * instruction accepts, argument counts, and values that can be checked before
 * ARG expansion (anything containing `$` waits for the build).
 */

type FlagKind = "string" | "bool" | "list";

const FLAG_SPECS: Readonly<Record<Keyword, Readonly<Record<string, FlagKind>>>> = {
  add: { chown: "string", chmod: "string", link: "bool", checksum: "string", "keep-git-dir": "bool", exclude: "list", unpack: "bool" },
  arg: {},
  cmd: {},
  copy: { from: "string", chown: "string", chmod: "string", link: "bool", parents: "bool", exclude: "list" },
  entrypoint: {},
  env: {},
  expose: {},
  from: { platform: "string" },
  healthcheck: { interval: "string", timeout: "string", "start-period": "string", "start-interval": "string", retries: "string" },
  label: {},
  maintainer: {},
  onbuild: {},
  run: { mount: "list", network: "string", security: "string", device: "list" },
  shell: {},
  stopsignal: {},
  user: {},
  volume: {},
  workdir: {},
};

/** Instructions whose flags Docker never reads: written flags are ignored there, so we warn. */
const FLAGS_IGNORED = new Set<Keyword>(["stopsignal"]);

export interface ValidationContext {
  fail: Fail;
  failAt: (message: string, span: Span, hint?: string) => never;
  warn: (warning: Warning) => void;
  /** The source span of offsets in the logical line. */
  spanOf: (start: number, end: number) => Span;
  escape: EscapeChar;
}

export function validateInstruction(ctx: ValidationContext, parsed: ParsedLine, isTrigger = false): void {
  const { instruction, offsets } = parsed;
  const upper = instruction.keyword.toUpperCase();
  const healthcheckNone = instruction.keyword === "healthcheck" && instruction.args[0]?.toUpperCase() === "NONE";
  if (FLAGS_IGNORED.has(instruction.keyword) || healthcheckNone) {
    for (const flag of instruction.flags) {
      ctx.warn({ code: "IgnoredFlag", message: `${upper} ignores the flag ${flag.raw}`, span: flag.span });
    }
  } else {
    validateFlags(ctx, instruction);
  }

  checkExpansions(ctx, parsed);

  switch (instruction.keyword) {
    case "env":
    case "label":
      validatePairs(ctx, parsed, upper);
      return;
    case "arg":
      validatePairs(ctx, parsed, upper);
      return;
    case "maintainer":
      if (instruction.args.length !== 1) failAtKeyword(ctx, parsed, "MAINTAINER requires the maintainer's name", 'prefer LABEL org.opencontainers.image.authors="name"');
      ctx.warn({ code: "MaintainerDeprecated", message: 'MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors="..."', span: instruction.span });
      return;
    case "add":
    case "copy":
      validateCopy(ctx, parsed, upper);
      return;
    case "from":
      if (isTrigger) failAtKeyword(ctx, parsed, "FROM isn't allowed as an ONBUILD trigger");
      validateFrom(ctx, parsed);
      return;
    case "onbuild":
      validateOnbuild(ctx, parsed);
      return;
    case "workdir":
      if (instruction.args.length !== 1) failAtKeyword(ctx, parsed, "WORKDIR requires a path", "e.g. WORKDIR /app");
      return;
    case "user":
      if (instruction.args.length !== 1) failAtKeyword(ctx, parsed, "USER requires a user name or id", "e.g. USER app or USER 1000:1000");
      return;
    case "run":
      validateRun(ctx, parsed);
      return;
    case "cmd":
    case "entrypoint":
      return;
    case "shell":
      if (!instruction.json) failAtArgs(ctx, parsed, "SHELL requires the JSON (exec) form", 'e.g. SHELL ["/bin/bash", "-c"]');
      if (instruction.args.length === 0) failAtArgs(ctx, parsed, "SHELL requires at least one argument", 'e.g. SHELL ["/bin/bash", "-c"]');
      return;
    case "healthcheck":
      validateHealthcheck(ctx, parsed);
      return;
    case "expose":
      if (instruction.args.length === 0) failAtKeyword(ctx, parsed, "EXPOSE requires at least one port", "e.g. EXPOSE 80 or EXPOSE 53/udp");
      validatePorts(ctx, offsets, instruction.args);
      return;
    case "volume":
      if (instruction.args.length === 0) failAtKeyword(ctx, parsed, "VOLUME requires at least one path", 'e.g. VOLUME /data or VOLUME ["/data"]');
      instruction.args.forEach((path, index) => {
        if (path.trim() === "") wordAt(ctx, offsets, index, "VOLUME paths must not be empty");
      });
      return;
    case "stopsignal":
      if (instruction.args.length !== 1) failAtKeyword(ctx, parsed, "STOPSIGNAL requires a signal", "e.g. STOPSIGNAL SIGTERM");
      validateSignal(ctx, offsets, instruction.args[0] as string);
      return;
  }
}

function validateFlags(ctx: ValidationContext, instruction: Instruction): void {
  if (instruction.flags.length === 0) return;
  const specs = FLAG_SPECS[instruction.keyword];
  const seen = new Set<string>();
  const upper = instruction.keyword.toUpperCase();
  for (const flag of instruction.flags) {
    const kind = specs[flag.name];
    if (kind === undefined) {
      const known = Object.keys(specs);
      const suggestion = closestMatch(flag.name, known);
      const hint = suggestion
        ? `did you mean --${suggestion}?`
        : known.length > 0
          ? `${upper} accepts ${known.map((name) => `--${name}`).join(", ")}`
          : `${upper} accepts no flags`;
      ctx.failAt(`unknown flag --${flag.name} for ${upper}`, flag.span, hint);
    }
    if (seen.has(flag.name) && kind !== "list") ctx.failAt(`--${flag.name} is given twice`, flag.span, "keep one of them");
    seen.add(flag.name);
    if (kind === "bool") {
      if (flag.value !== undefined && !["true", "false"].includes(flag.value.toLowerCase())) {
        ctx.failAt(`--${flag.name} takes true or false, not "${flag.value}"`, flag.span, `write --${flag.name} or --${flag.name}=false`);
      }
    } else if (flag.value === undefined) {
      ctx.failAt(`--${flag.name} needs a value`, flag.span, `write --${flag.name}=VALUE`);
    }
  }
}

function flagValue(instruction: Instruction, name: string): Flag | undefined {
  return instruction.flags.find((flag) => flag.name === name);
}

function validatePairs(ctx: ValidationContext, parsed: ParsedLine, upper: string): void {
  const { instruction } = parsed;
  const pairs = instruction.pairs ?? [];
  if (pairs.length === 0) {
    const example = instruction.keyword === "arg" ? "ARG VERSION=1.0" : `${upper} name=value`;
    failAtKeyword(ctx, parsed, `${upper} requires at least one argument`, `e.g. ${example}`);
  }
  for (const pair of pairs) {
    if (pair.key === "") ctx.failAt(`${upper} names must not be empty`, pair.span, `write name=value, e.g. ${upper} VERSION=1.0`);
  }
}

function validateCopy(ctx: ValidationContext, parsed: ParsedLine, upper: string): void {
  const { instruction, offsets } = parsed;
  if (instruction.args.length < 2) {
    failAtKeyword(ctx, parsed, 
      `${upper} requires at least one source and a destination`,
      instruction.args.length === 1 ? `add the destination, e.g. ${upper} ${instruction.args[0]} /app/` : `e.g. ${upper} . /app/`,
    );
  }
  if (!instruction.json) {
    const destinationIndex = instruction.args.length - 1;
    const destination = instruction.args[destinationIndex] as string;
    if (heredocWordSafe(ctx, offsets, destinationIndex, destination)) {
      wordAt(ctx, offsets, destinationIndex, `${upper} cannot take a heredoc as its destination`, "put the heredoc before the destination path");
    }
  }
  const chmod = flagValue(instruction, "chmod");
  if (chmod?.value !== undefined && !chmod.value.includes("$") && !isValidChmod(chmod.value)) {
    ctx.failAt(`invalid --chmod value "${chmod.value}"`, chmod.span, "use octal (e.g. 0755) or symbolic (e.g. u=rwx,go=rx) permissions");
  }
  const checksum = flagValue(instruction, "checksum");
  if (checksum?.value !== undefined && !checksum.value.includes("$") && !isValidChecksum(checksum.value)) {
    ctx.failAt(`invalid --checksum "${checksum.value}"`, checksum.span, "use sha256:<64 hex digits> (or sha384/sha512)");
  }
}

function heredocWordSafe(ctx: ValidationContext, offsets: InstructionOffsets, index: number, word: string): boolean {
  try {
    return parseHeredocWord(word) !== undefined;
  } catch (error) {
    if (error instanceof ShellExpansionError) wordAt(ctx, offsets, index, `invalid heredoc delimiter: ${error.message}`);
    throw error;
  }
}

function isValidChmod(value: string): boolean {
  return /^[0-7]{3,4}$/.test(value) || /^([ugoa]*[-+=]([rwxXst]*|[ugo]))(,[ugoa]*[-+=]([rwxXst]*|[ugo]))*$/.test(value);
}

function isValidChecksum(value: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(value) || /^sha384:[0-9a-f]{96}$/.test(value) || /^sha512:[0-9a-f]{128}$/.test(value);
}

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function validateFrom(ctx: ValidationContext, parsed: ParsedLine): void {
  const { instruction, offsets } = parsed;
  const args = instruction.args;
  if (args.length === 0) failAtKeyword(ctx, parsed, "FROM requires an image", "e.g. FROM debian:12, FROM scratch, or FROM base AS build");
  if (args.length === 3 && args[1]?.toLowerCase() === "as") {
    const name = args[2] as string;
    if (!STAGE_NAME.test(name.toLowerCase())) {
      wordAt(ctx, offsets, 2, `invalid stage name "${name}"`, "a stage name starts with a letter and has only letters, digits, '-', '_' and '.'");
    }
    if (name !== name.toLowerCase()) {
      ctx.warn({ code: "StageNameCasing", message: `stage name "${name}" is used as "${name.toLowerCase()}"`, span: spanOfWord(ctx, offsets, 2) });
    }
    return;
  }
  if (args.length === 3) wordAt(ctx, offsets, 1, `expected AS before the stage name, found "${args[1]}"`, `write FROM ${args[0]} AS ${args[2]}`);
  if (args.length === 2) wordAt(ctx, offsets, 1, `unexpected "${args[1]}" after the image`, `to name the stage write FROM ${args[0]} AS ${args[1]}`);
  if (args.length > 3) wordAt(ctx, offsets, 3, "FROM takes an image and optionally AS <name>; found more words", "remove the extra words");
}

function validateOnbuild(ctx: ValidationContext, parsed: ParsedLine): void {
  const trigger = parsed.trigger;
  if (!trigger) failAtKeyword(ctx, parsed, "ONBUILD requires an instruction to run later", "e.g. ONBUILD COPY . /app/");
  const keyword = trigger.instruction.keyword;
  const at = (message: string) => ctx.fail(message, trigger.offsets.keyword.start, trigger.offsets.keyword.end);
  if (keyword === "onbuild") at("ONBUILD ONBUILD is not allowed: triggers cannot be chained");
  if (keyword === "maintainer" || keyword === "from") at(`${keyword.toUpperCase()} isn't allowed as an ONBUILD trigger`);
  validateInstruction(ctx, trigger, true);
}

const NETWORK_MODES = ["default", "none", "host"];
const SECURITY_MODES = ["sandbox", "insecure"];

function validateRun(ctx: ValidationContext, parsed: ParsedLine): void {
  const { instruction } = parsed;
  if (instruction.args.length === 0 && instruction.heredocs.length === 0 && !instruction.json) {
    failAtKeyword(ctx, parsed, "RUN requires a command", "e.g. RUN make, or RUN <<EOF with a script below it");
  }
  for (const flag of instruction.flags) {
    const value = flag.value ?? "";
    if (flag.name === "network" && !value.includes("$") && !NETWORK_MODES.includes(value)) {
      ctx.failAt(`unsupported network mode "${value}"`, flag.span, `--network is ${NETWORK_MODES.join(", ")}`);
    }
    if (flag.name === "security" && !value.includes("$") && !SECURITY_MODES.includes(value)) {
      ctx.failAt(`unsupported security mode "${value}"`, flag.span, `--security is ${SECURITY_MODES.join(" or ")}`);
    }
    if (flag.name === "device" && value === "") ctx.failAt("--device needs a device path", flag.span, "e.g. --device=/dev/fuse");
    if (flag.name === "mount") {
      try {
        parseMountSpec(value);
      } catch (error) {
        if (error instanceof MountSpecError) ctx.failAt(`invalid --mount: ${error.message}`, flag.span, error.hint);
        throw error;
      }
    }
  }
}

function validateHealthcheck(ctx: ValidationContext, parsed: ParsedLine): void {
  const { instruction, offsets } = parsed;
  const type = instruction.args[0]?.toUpperCase();
  if (type === undefined) failAtKeyword(ctx, parsed, "HEALTHCHECK requires NONE or CMD <command>", "e.g. HEALTHCHECK CMD curl -f http://localhost/");
  if (type === "NONE") {
    if (instruction.args.length > 1) wordAt(ctx, offsets, 1, "HEALTHCHECK NONE takes no arguments");
    return;
  }
  if (type !== "CMD") wordAt(ctx, offsets, 0, `unknown HEALTHCHECK type "${instruction.args[0]}"`, "use HEALTHCHECK CMD <command> or HEALTHCHECK NONE");
  if (instruction.args.length < 2) failAtKeyword(ctx, parsed, "HEALTHCHECK CMD requires a command", "e.g. HEALTHCHECK CMD curl -f http://localhost/");
  for (const flag of instruction.flags) {
    const value = flag.value ?? "";
    if (flag.name === "retries") {
      if (!/^[-+]?\d+$/.test(value) || Number(value) > 2 ** 31 - 1) ctx.failAt(`--retries must be a whole number, not "${value}"`, flag.span);
      if (Number(value) < 0) ctx.failAt(`--retries cannot be negative (${value})`, flag.span);
      continue;
    }
    const duration = parseGoDuration(value);
    if (duration === undefined) {
      ctx.failAt(`invalid duration "${value}" for --${flag.name}`, flag.span, "use a Go duration such as 30s, 1m30s or 500ms");
    }
    if (duration !== 0 && duration < 1e6) ctx.failAt(`--${flag.name} cannot be less than 1ms`, flag.span);
  }
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ns: 1, us: 1e3, "µs": 1e3, "μs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration, in nanoseconds; undefined when invalid. Empty means unset (0). */
export function parseGoDuration(text: string): number | undefined {
  if (text === "" || text === "0" || text === "+0" || text === "-0") return 0;
  const match = /^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text);
  if (!match) return undefined;
  let total = 0;
  for (const part of (match[2] as string).matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * (DURATION_UNITS[part[2] as string] as number);
  }
  return match[1] === "-" ? -total : total;
}

const PORT = /^(\d+)(?:-(\d+))?$/;

function validatePorts(ctx: ValidationContext, offsets: InstructionOffsets, ports: string[]): void {
  ports.forEach((spec, index) => {
    if (spec.includes("$")) return;
    const [portPart = "", protocol, extra] = spec.split("/");
    const containerPort = portPart.slice(portPart.lastIndexOf(":") + 1);
    const match = PORT.exec(containerPort);
    const bad = (message: string, hint?: string) => wordAt(ctx, offsets, index, message, hint);
    if (extra !== undefined || !match) return bad(`invalid port "${spec}"`, "e.g. EXPOSE 80, EXPOSE 53/udp or EXPOSE 8000-8010/tcp");
    if (protocol !== undefined && !["tcp", "udp", "sctp"].includes(protocol.toLowerCase())) {
      bad(`unknown protocol "${protocol}" in "${spec}"`, "the protocol is tcp, udp or sctp");
    }
    const low = Number(match[1]);
    const high = match[2] === undefined ? low : Number(match[2]);
    if (low > 65535 || high > 65535) bad(`port out of range in "${spec}"`, "ports are 0 to 65535");
    if (high < low) bad(`invalid port range "${spec}": the end is before the start`);
  });
}

const SIGNALS = [
  "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE", "POLL", "PROF",
  "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2",
  "VTALRM", "WINCH", "XCPU", "XFSZ",
];

function validateSignal(ctx: ValidationContext, offsets: InstructionOffsets, signal: string): void {
  if (signal.includes("$")) return;
  const name = signal.toUpperCase().replace(/^SIG/, "");
  const number = /^\d+$/.test(signal) ? Number(signal) : undefined;
  const realtime = /^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name);
  if (number !== undefined ? number >= 1 && number <= 64 : SIGNALS.includes(name) || realtime) return;
  wordAt(ctx, offsets, 0, `unknown signal "${signal}"`, "e.g. STOPSIGNAL SIGTERM, STOPSIGNAL SIGQUIT or STOPSIGNAL 9");
}

function spanOfWord(ctx: ValidationContext, offsets: InstructionOffsets, index: number): Span {
  const word = offsets.argWords[index];
  return ctx.spanOf(word?.start ?? offsets.argsStart, word?.end ?? offsets.argsEnd);
}

function wordAt(ctx: ValidationContext, offsets: InstructionOffsets, index: number, message: string, hint?: string): never {
  const word = offsets.argWords[index];
  return ctx.fail(message, word?.start ?? offsets.argsStart, word?.end ?? offsets.argsEnd, hint);
}

function failAtKeyword(ctx: ValidationContext, parsed: ParsedLine, message: string, hint?: string): never {
  return ctx.fail(message, parsed.offsets.keyword.start, parsed.offsets.keyword.end, hint);
}

function failAtArgs(ctx: ValidationContext, parsed: ParsedLine, message: string, hint?: string): never {
  const { argsStart, argsEnd } = parsed.offsets;
  return ctx.fail(message, argsStart, Math.max(argsEnd, argsStart + 1), hint);
}

/** Instructions whose arguments Docker expands with ARG and ENV values (the others go to a shell as is). */
const EXPANDING = new Set<Keyword>(["add", "arg", "copy", "env", "expose", "from", "label", "stopsignal", "user", "volume", "workdir"]);
/** Flags whose values are expanded. */
const EXPANDING_FLAGS = new Set(["from", "chown", "chmod", "checksum", "platform", "mount"]);
const MIGHT_EXPAND = /[$'"\\`]/;
const EVERY_VARIABLE_SET = (): string => "x";

/**
 * Catches expansion syntax errors (unterminated quotes, `${` without `}`) now
 * rather than at build time. Every variable counts as set, so `${v:?message}`
 * only fails at build time, when it should.
 */
function checkExpansions(ctx: ValidationContext, parsed: ParsedLine): void {
  const { instruction, offsets } = parsed;
  if (!EXPANDING.has(instruction.keyword)) return;
  for (const flag of instruction.flags) {
    if (flag.value !== undefined && EXPANDING_FLAGS.has(flag.name)) checkWord(ctx, flag.value, flag.span);
  }
  for (const pair of instruction.pairs ?? []) {
    checkWord(ctx, pair.key, pair.span);
    if (pair.value !== undefined) checkWord(ctx, pair.value, pair.span);
  }
  instruction.args.forEach((arg, index) => {
    // Heredoc bodies expand at build time; their opening words are not paths.
    if (arg.startsWith("<<") || /^\d+<</.test(arg)) return;
    checkWord(ctx, arg, spanOfWord(ctx, offsets, index));
  });
}

function checkWord(ctx: ValidationContext, word: string, span: Span): void {
  if (!MIGHT_EXPAND.test(word)) return;
  try {
    expandWord(word, EVERY_VARIABLE_SET, { escape: ctx.escape });
  } catch (error) {
    if (!(error instanceof ShellExpansionError)) throw error;
    ctx.failAt(error.reason, span, "close the quote or the ${...}, or escape the character");
  }
}
