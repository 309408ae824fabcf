import { closestMatch } from "./suggest.ts";

/**
 * `RUN --mount=...` specs: CSV `key=value` fields, validated as far as they
 * can be before ARG expansion (values containing `$` are checked at build time).
 */

export const MOUNT_TYPES = ["bind", "cache", "tmpfs", "secret", "ssh"] as const;
export type MountType = (typeof MOUNT_TYPES)[number];

export interface MountSpec {
  type: MountType;
  /** Every field as written, keys lower-cased, in order; flags without `=` have value undefined. */
  fields: { key: string; value: string | undefined }[];
}

export class MountSpecError extends Error {
  readonly hint: string | undefined;
  constructor(message: string, hint?: string) {
    super(message);
    this.hint = hint;
  }
}

const KEYS = [
  "type", "from", "source", "src", "target", "dst", "destination", "readonly", "ro", "readwrite", "rw",
  "id", "sharing", "required", "size", "mode", "uid", "gid", "env",
];
/** Keys that only make sense for some mount types. */
const KEY_TYPES: Readonly<Record<string, readonly MountType[]>> = {
  sharing: ["cache"],
  required: ["secret", "ssh"],
  size: ["tmpfs"],
  env: ["secret"],
  mode: ["cache", "secret", "ssh"],
  uid: ["cache", "secret", "ssh"],
  gid: ["cache", "secret", "ssh"],
  from: ["bind", "cache"],
  id: ["cache", "secret", "ssh"],
};
const BOOLEAN_KEYS = new Set(["readonly", "ro", "readwrite", "rw", "required"]);
const GO_BOOLEANS = new Set(["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"]);

export function parseMountSpec(spec: string): MountSpec {
  const fields = splitCsv(spec).map((field) => {
    const equals = field.indexOf("=");
    return equals < 0
      ? { key: field.toLowerCase(), value: undefined }
      : { key: field.slice(0, equals).toLowerCase(), value: field.slice(equals + 1) };
  });
  const typeField = fields.find((field) => field.key === "type");
  const type = mountType(typeField);
  for (const field of fields) validateField(type, field);
  const has = (...keys: string[]) => fields.some((field) => keys.includes(field.key));
  if ((type === "bind" || type === "cache" || type === "tmpfs") && !has("target", "dst", "destination")) {
    throw new MountSpecError(`a ${type} mount needs a target`, `add target=/path/in/container, e.g. --mount=type=${type},target=/cache`);
  }
  if (type === "secret" && !has("id", "target", "dst", "destination", "source", "src", "env")) {
    throw new MountSpecError("a secret mount needs an id or a target", "add id=NAME (the secret is then at /run/secrets/NAME)");
  }
  if (type === "secret" && has("source", "src") && has("id")) {
    throw new MountSpecError("a secret mount takes either source or id, not both");
  }
  return { type, fields };
}

function mountType(field: { value: string | undefined } | undefined): MountType {
  if (!field) return "bind";
  const value = (field.value ?? "").toLowerCase();
  if ((MOUNT_TYPES as readonly string[]).includes(value)) return value as MountType;
  const suggestion = closestMatch(value, MOUNT_TYPES);
  throw new MountSpecError(
    `unsupported mount type "${field.value ?? ""}"`,
    suggestion ? `did you mean type=${suggestion}?` : `mount types are ${MOUNT_TYPES.join(", ")}`,
  );
}

function validateField(type: MountType, field: { key: string; value: string | undefined }): void {
  const { key, value } = field;
  if (!KEYS.includes(key)) {
    const suggestion = closestMatch(key, KEYS);
    throw new MountSpecError(
      `unknown mount option "${key}"`,
      suggestion ? `did you mean ${suggestion}?` : `mount options are ${KEYS.join(", ")}`,
    );
  }
  const allowed = KEY_TYPES[key];
  if (allowed && !allowed.includes(type)) {
    throw new MountSpecError(`option "${key}" does not apply to ${type} mounts`, `it applies to: ${allowed.join(", ")}`);
  }
  if (value === undefined) {
    if (!BOOLEAN_KEYS.has(key)) throw new MountSpecError(`mount option "${key}" needs a value`, `write ${key}=VALUE`);
    return;
  }
  if (value.includes("$")) return; // expanded from ARGs at build time
  if (BOOLEAN_KEYS.has(key) && !GO_BOOLEANS.has(value)) {
    throw new MountSpecError(`mount option "${key}" must be true or false, not "${value}"`);
  }
  if (key === "sharing" && !["shared", "private", "locked"].includes(value.toLowerCase())) {
    throw new MountSpecError(`unsupported sharing mode "${value}"`, "sharing is shared, private or locked");
  }
  if (key === "mode" && !/^[0-7]{1,11}$/.test(value)) {
    throw new MountSpecError(`mount mode must be octal, not "${value}"`, "e.g. mode=0755");
  }
  if ((key === "uid" || key === "gid") && !/^\d{1,10}$/.test(value)) {
    throw new MountSpecError(`mount ${key} must be a number, not "${value}"`);
  }
  if (key === "size" && !/^\d+(\.\d+)?\s*([kmgtp]i?b?|b)?$/i.test(value)) {
    throw new MountSpecError(`invalid tmpfs size "${value}"`, "e.g. size=64m");
  }
}

/** Splits a CSV record: commas separate fields; a field may be "quoted" ("" is a quote inside). */
export function splitCsv(text: string): string[] {
  const fields: string[] = [];
  let position = 0;
  while (position <= text.length) {
    if (text[position] === '"') {
      let value = "";
      let cursor = position + 1;
      for (;;) {
        const quote = text.indexOf('"', cursor);
        if (quote < 0) throw new MountSpecError(`unterminated quote in "${text}"`, 'close the quoted field with "');
        value += text.slice(cursor, quote);
        if (text[quote + 1] === '"') {
          value += '"';
          cursor = quote + 2;
          continue;
        }
        cursor = quote + 1;
        break;
      }
      if (cursor < text.length && text[cursor] !== ",") {
        throw new MountSpecError(`unexpected text after a quoted field in "${text}"`);
      }
      fields.push(value);
      position = cursor + 1;
      continue;
    }
    const comma = text.indexOf(",", position);
    const end = comma < 0 ? text.length : comma;
    const value = text.slice(position, end);
    if (value.includes('"')) throw new MountSpecError(`a quote may only start a field, in "${text}"`, 'quote the whole field: "key=a,b"');
    fields.push(value);
    position = end + 1;
  }
  return fields.filter((field) => field !== "");
}
