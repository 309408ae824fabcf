import { ExporterError } from "./errors.ts";
import type { ImageConfigInput } from "./image.ts";

/** 9999-12-31T23:59:59Z: RFC 3339 has four-digit years. */
const MAX_EPOCH = 253_402_300_799;

/** SOURCE_DATE_EPOCH is whole seconds since 1970 (reproducible-builds.org): anything else is refused. */
export function checkEpoch(epoch: number): void {
  if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) {
    throw new ExporterError("ERR_BAD_OPTION", `SOURCE_DATE_EPOCH ${epoch} is not a number of seconds since 1970-01-01`, {
      hint: "give whole seconds, e.g. SOURCE_DATE_EPOCH=$(git log -1 --pretty=%ct)",
    });
  }
}

/** The epoch as an RFC 3339 time, the form image configs use ("2024-01-02T03:04:05Z"). */
export function epochTimestamp(epoch: number): string {
  checkEpoch(epoch);
  return new Date(epoch * 1000).toISOString().replace(".000Z", "Z");
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Seconds since 1970 of an RFC 3339 time, plus whether it has a non-zero fraction; undefined if it is not one. */
function parseTime(text: string): { seconds: number; fraction: boolean } | undefined {
  const match = RFC3339.exec(text);
  if (!match) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const utc = Date.UTC(year, month - 1, day, hour, minute, second) / 1000;
  const offset = match[8] ? 0 : (match[9] === "-" ? -1 : 1) * (Number(match[10]) * 3600 + Number(match[11]) * 60);
  return { seconds: utc - offset, fraction: /[1-9]/.test(match[7] ?? "") };
}

/**
 * SOURCE_DATE_EPOCH for an image config, as BuildKit's image exporter applies it: the config's
 * `created` and every history entry's `created` that is later than the epoch, or missing,
 * become the epoch; earlier times are kept (a base image's history keeps its dates). The
 * same build at the same epoch so gets the same config, hence the same image digest.
 * Pure: returns a new config and leaves the argument as it was.
 */
export function applySourceDateEpoch<Config extends ImageConfigInput>(config: Config, epoch: number): Config {
  const stamp = epochTimestamp(epoch);
  const clamp = (created: string | undefined, where: string): string => {
    if (created === undefined) return stamp;
    const time = parseTime(created);
    if (time === undefined) {
      throw new ExporterError("ERR_IMAGE_CONFIG", `${where} ${JSON.stringify(created)} is not an RFC 3339 time`, {
        hint: 'image configs need times like "2024-01-02T03:04:05Z"',
      });
    }
    return time.seconds > epoch || (time.seconds === epoch && time.fraction) ? stamp : created;
  };
  const result: Config = { ...config, created: clamp(config.created, "the image config's created time") };
  if (config.history) {
    result.history = config.history.map((entry, i) => ({ ...entry, created: clamp(entry.created, `history entry ${i}'s created time`) }));
  }
  return result;
}
