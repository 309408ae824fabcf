import { readFile } from "node:fs/promises";
import { isatty } from "node:tty";
import { hostPlatform, parsePlatform } from "../../frontend/index.ts";
import { readImageArchive, writeDockerArchive, writeOciTar, type OciManifest, type Platform } from "../../exporter/index.ts";
import { isIndexMediaType } from "../../exporter/media-types.ts";
import { familiarName, findImage, imageId, readJsonBlob, readStoredImage, requireImage, storedName, loadArchiveImage } from "../../images/index.ts";
import { formatReference, login, logout, parseReference, pullImage, pushImage, type PushIndex, type PushManifest } from "../../registry/index.ts";
import type { ImageRef, StateRoot } from "../../solver/store/index.ts";
import { StateRoot as Store } from "../../solver/store/index.ts";
import { EXIT, UserError } from "../errors.ts";
import { registryOptions, type RegistryArgs } from "../registry-options.ts";
import { stateRootDir } from "../state-root.ts";

type Common = { root?: string } & Partial<RegistryArgs>;

function openStore(args: Common): Promise<StateRoot> {
  return Store.open(stateRootDir(args.root));
}

/** Ctrl-C aborts transfers; the handler is removed when the command ends. */
async function withSignal<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

function platformArg(text: string | undefined): Platform | undefined {
  if (text === undefined) return undefined;
  const platform = parsePlatform(text);
  if (!platform) throw new UserError(`--platform ${text}: not a platform`, "write os/arch[/variant], e.g. linux/arm64");
  return platform;
}

function hostOrGiven(text: string | undefined): Platform {
  return platformArg(text) ?? hostPlatform();
}

export async function runPull(args: Common & { name: string; platform?: string; quiet: boolean }): Promise<number> {
  const store = await openStore(args);
  const lease = await store.acquireLease();
  try {
    const reference = parseReference(args.name);
    const name = formatReference(reference);
    const pulled = await withSignal(async (signal) => {
      const options = await registryOptions(args, signal);
      return pullImage(reference, store, {
        ...options,
        platform: hostOrGiven(args.platform),
        onEvent: args.quiet ? undefined : (event) => {
          if (event.kind === "blob" && event.done === event.size) process.stderr.write(`${event.action === "exists" ? "already here" : "pulled"} ${event.digest.slice(7, 19)} ${formatBytes(event.size)}\n`);
          if (event.kind === "retry") process.stderr.write(`retrying ${event.what} in ${Math.round(event.delayMs)} ms: ${event.reason}\n`);
        },
      });
    });
    const size = (await readFile(store.blobPath(pulled.manifestDigest))).length;
    await store.putImageRef({ name, target: { mediaType: pulled.manifestMediaType, digest: pulled.manifestDigest, size }, createdAt: new Date().toISOString(), origin: "pull", repoDigest: pulled.digest });
    if (!args.quiet) process.stderr.write(`Digest: ${pulled.digest}\n`);
    process.stdout.write(`${name}\n`);
    return EXIT.ok;
  } finally {
    await lease.release();
  }
}

export async function runPush(args: Common & { name: string; quiet: boolean }): Promise<number> {
  const store = await openStore(args);
  const lease = await store.acquireLease();
  try {
    const found = await requireImage(store, args.name);
    // An image given by id is pushed under the name it is stored as.
    const target = found.ref.name;
    const content = await pushContent(store, found.ref);
    const reference = parseReference(target);
    const pushed = await withSignal(async (signal) => {
      const options = await registryOptions(args, signal);
      return pushImage(reference, content, store, {
        ...options,
        onEvent: args.quiet ? undefined : (event) => {
          if (event.kind === "blob" && event.done === event.size) process.stderr.write(`${event.action === "exists" ? "exists" : event.action === "mounted" ? "mounted" : "pushed"} ${event.digest.slice(7, 19)} ${formatBytes(event.size)}\n`);
          if (event.kind === "retry") process.stderr.write(`retrying ${event.what} in ${Math.round(event.delayMs)} ms: ${event.reason}\n`);
        },
      });
    });
    await store.putImageRef({ ...found.ref, repoDigest: pushed.digest });
    process.stdout.write(args.quiet ? `${pushed.digest}\n` : `${formatReference(reference)}@${pushed.digest}\n`);
    return EXIT.ok;
  } finally {
    await lease.release();
  }
}

async function pushContent(store: StateRoot, ref: ImageRef): Promise<PushManifest | PushIndex> {
  const manifestOf = async (digest: string, mediaType: string): Promise<PushManifest> => {
    const bytes = await readFile(store.blobPath(digest)).catch(() => {
      throw new UserError(`the manifest ${digest} of ${familiarName(ref.name)} is missing from the store`, "build or pull the image again");
    });
    const manifest = JSON.parse(bytes.toString("utf8")) as OciManifest;
    for (const blob of [manifest.config, ...manifest.layers]) {
      if (!(await store.hasBlob(blob.digest))) throw new UserError(`${familiarName(ref.name)}: blob ${blob.digest} is missing from the store`, "build or pull the image again");
    }
    return { manifest: bytes, mediaType, blobs: [manifest.config, ...manifest.layers] };
  };
  if (!isIndexMediaType(ref.target.mediaType)) return manifestOf(ref.target.digest, ref.target.mediaType);
  const index = await readJsonBlob<{ manifests: { digest: string; mediaType: string }[] }>(store, ref.target.digest, "image index");
  const manifests = [];
  for (const entry of index.manifests) manifests.push(await manifestOf(entry.digest, entry.mediaType));
  return { index: await readFile(store.blobPath(ref.target.digest)), mediaType: ref.target.mediaType, manifests };
}

interface ImageRow {
  repository: string;
  tag: string;
  digest: string;
  id: string;
  created: string;
  size: number;
}

async function imageRows(store: StateRoot, refs: readonly ImageRef[]): Promise<ImageRow[]> {
  const rows: ImageRow[] = [];
  for (const ref of refs) {
    const familiar = familiarName(ref.name);
    const reference = parseReference(ref.name);
    const repository = familiar.replace(/[:@][^/]*$/, "");
    let created = "";
    let size = 0;
    try {
      const image = await readStoredImage(store, ref.target);
      created = image.config.created ?? "";
      size = image.manifest.layers.reduce((total, layer) => total + layer.size, 0);
    } catch {
      // An index whose host platform was never pulled: listed without size.
    }
    rows.push({ repository, tag: reference.tag ?? "<none>", digest: ref.repoDigest ?? ref.target.digest, id: await imageId(store, ref).catch(() => ref.target.digest), created, size });
  }
  return rows;
}

export async function runImages(args: Common & { name?: string; quiet: boolean; digests: boolean; noTrunc: boolean; format: "table" | "json" }): Promise<number> {
  const store = await openStore(args);
  let refs = await store.listImageRefs();
  if (args.name !== undefined) {
    const wanted = parseReference(args.name);
    const explicitTag = /:[^/]*$/.test(args.name) && !args.name.includes("@");
    refs = refs.filter((ref) => {
      const candidate = parseReference(ref.name);
      return candidate.registry === wanted.registry && candidate.repository === wanted.repository && (!explicitTag || candidate.tag === wanted.tag);
    });
  }
  const rows = await imageRows(store, refs);
  const shortId = (id: string) => (args.noTrunc ? id : id.replace(/^sha256:/, "").slice(0, 12));
  if (args.quiet) {
    process.stdout.write([...new Set(rows.map((row) => shortId(row.id)))].map((id) => `${id}\n`).join(""));
    return EXIT.ok;
  }
  if (args.format === "json") {
    process.stdout.write(rows.map((row) => `${JSON.stringify({ Repository: row.repository, Tag: row.tag, Digest: row.digest, ID: shortId(row.id), CreatedAt: row.created, Size: row.size })}\n`).join(""));
    return EXIT.ok;
  }
  const header = ["REPOSITORY", "TAG", ...(args.digests ? ["DIGEST"] : []), "IMAGE ID", "CREATED", "SIZE"];
  const table = rows.map((row) => [row.repository, row.tag, ...(args.digests ? [row.digest] : []), shortId(row.id), ago(row.created), formatBytes(row.size)]);
  process.stdout.write(formatTable([header, ...table]));
  return EXIT.ok;
}

export async function runTag(args: Common & { source: string; target: string }): Promise<number> {
  const store = await openStore(args);
  const found = await requireImage(store, args.source);
  const name = storedName(args.target);
  await store.putImageRef({ ...found.ref, name, createdAt: new Date().toISOString() });
  return EXIT.ok;
}

export async function runRmi(args: Common & { names: string[]; force: boolean }): Promise<number> {
  const store = await openStore(args);
  const reachedBefore = await store.reachableBlobs();
  let failed = false;
  for (const text of args.names) {
    const found = await findImage(store, text);
    if (found === undefined) {
      process.stderr.write(`error: no image "${text}" in the local image store\n`);
      failed = true;
      continue;
    }
    const names = found.byId ? [found.ref, ...found.aliases] : [found.ref];
    if (found.byId && names.length > 1 && !args.force) {
      process.stderr.write(`error: image ${text} has several names (${names.map((ref) => familiarName(ref.name)).join(", ")})\nhint: remove them by name, or pass --force to remove them all\n`);
      failed = true;
      continue;
    }
    for (const ref of names) {
      await store.removeImageRef(ref.name);
      process.stdout.write(`Untagged: ${familiarName(ref.name)}\n`);
    }
  }
  // As docker does, what no other name needs goes now (layers already extracted stay cached until prune).
  const { removed } = await store.removeUnreachableBlobs(reachedBefore);
  for (const digest of removed) process.stdout.write(`Deleted: ${digest}\n`);
  return failed ? EXIT.userError : EXIT.ok;
}

export async function runInspect(args: Common & { names: string[]; platform?: string }): Promise<number> {
  const store = await openStore(args);
  const platform = platformArg(args.platform);
  const results = [];
  for (const text of args.names) {
    const found = await requireImage(store, text);
    const image = await readStoredImage(store, found.ref.target, platform);
    const refs = [found.ref, ...found.aliases];
    results.push({
      Id: image.configDigest,
      RepoTags: refs.filter((ref) => parseReference(ref.name).tag !== undefined).map((ref) => familiarName(ref.name)),
      RepoDigests: refs.filter((ref) => ref.repoDigest !== undefined).map((ref) => `${familiarName(ref.name).replace(/[:@][^/]*$/, "")}@${ref.repoDigest}`),
      ManifestDigest: image.manifestDigest,
      Created: image.config.created,
      Author: image.config.author,
      Architecture: image.config.architecture,
      Os: image.config.os,
      ...(image.config.variant ? { Variant: image.config.variant } : {}),
      Config: image.config.config ?? {},
      RootFS: image.config.rootfs,
      Size: image.manifest.layers.reduce((total, layer) => total + layer.size, 0),
      Layers: image.manifest.layers,
      Annotations: image.manifest.annotations ?? {},
    });
  }
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  return EXIT.ok;
}

export async function runHistory(args: Common & { name: string; noTrunc: boolean; format: "table" | "json" }): Promise<number> {
  const store = await openStore(args);
  const found = await requireImage(store, args.name);
  const image = await readStoredImage(store, found.ref.target);
  const history = image.config.history ?? [];
  const layers = [...image.manifest.layers];
  // Newest first, as docker history; each entry without empty_layer owns the next layer from the bottom.
  const rows = history.map((entry) => ({ entry, size: entry.empty_layer ? 0 : (layers.shift()?.size ?? 0) })).reverse();
  if (args.format === "json") {
    process.stdout.write(rows.map(({ entry, size }) => `${JSON.stringify({ CreatedAt: entry.created ?? "", CreatedBy: entry.created_by ?? "", Size: size, Comment: entry.comment ?? "", EmptyLayer: entry.empty_layer === true })}\n`).join(""));
    return EXIT.ok;
  }
  const cut = (text: string) => (args.noTrunc || text.length <= 45 ? text : `${text.slice(0, 44)}…`);
  // One line per step: a heredoc's newlines would break the table.
  const table = rows.map(({ entry, size }) => [ago(entry.created ?? ""), cut((entry.created_by ?? "").replace(/\s+/g, " ")), formatBytes(size), entry.comment ?? ""]);
  process.stdout.write(formatTable([["CREATED", "CREATED BY", "SIZE", "COMMENT"], ...table]));
  return EXIT.ok;
}

export async function runSave(args: Common & { names: string[]; output?: string; format: "docker" | "oci" }): Promise<number> {
  if (args.output === undefined && isatty(1)) throw new UserError("refusing to write an archive to a terminal", "give a file with -o FILE, or redirect standard output");
  const store = await openStore(args);
  const images = [];
  for (const text of args.names) {
    const found = await requireImage(store, text);
    const image = await readStoredImage(store, found.ref.target);
    // The config's own bytes, so the archive keeps the image id (a re-serialized config could differ).
    const configBytes = await readFile(store.blobPath(image.configDigest));
    const diffIds = image.config.rootfs?.diff_ids ?? [];
    const layers = image.manifest.layers.map((layer, index) => ({ ...layer, diffId: diffIds[index] as string, path: store.blobPath(layer.digest) }));
    // An image given by id is saved without a name, as docker save does.
    const tags = found.byId ? [] : [found.ref.name];
    images.push({ config: image.config, configBytes, layers, tags });
  }
  if (args.format === "oci") {
    if (images.length !== 1) throw new UserError("--format oci saves one image per archive", "save the images one by one");
    const [image] = images as [(typeof images)[number]];
    await writeOciTar(args.output ?? process.stdout, { layers: image.layers, config: image.config, configBytes: image.configBytes, tags: image.tags });
  } else {
    await writeDockerArchive(args.output ?? process.stdout, images.map((image) => ({ config: image.configBytes, layers: image.layers, tags: image.tags.map(familiarName) })));
  }
  return EXIT.ok;
}

export async function runLoad(args: Common & { input?: string; quiet: boolean }): Promise<number> {
  if (args.input === undefined && isatty(0)) throw new UserError("no archive given", "pass it with -i FILE, or on standard input");
  const store = await openStore(args);
  const lease = await store.acquireLease();
  const tmpDir = store.tempPath("load");
  try {
    const archive = await readImageArchive(args.input ?? "/dev/stdin", { tmpDir });
    try {
      for (const image of archive.images) {
        const loaded = await loadArchiveImage(store, image);
        if (loaded.names.length === 0) process.stdout.write(`Loaded image ID: ${loaded.configDigest}\n`);
        for (const name of loaded.names) process.stdout.write(args.quiet ? `${familiarName(name)}\n` : `Loaded image: ${familiarName(name)}\n`);
      }
    } finally {
      await archive.dispose();
    }
    return EXIT.ok;
  } finally {
    await lease.release();
  }
}

export async function runLogin(args: Common & { server?: string; username?: string; password?: string; passwordStdin: boolean }): Promise<number> {
  const server = registryOf(args.server);
  if (args.passwordStdin && args.password !== undefined) throw new UserError("--password and --password-stdin are exclusive", "use --password-stdin");
  if (args.username === undefined) throw new UserError("the user name is missing", "pass it with -u USER");
  let password = args.password;
  if (args.passwordStdin) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    password = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  }
  if (password === undefined || password === "") throw new UserError("the password is missing", "pass it on standard input with --password-stdin");
  if (args.password !== undefined) process.stderr.write("warning: a password on the command line can be seen by other users; use --password-stdin\n");
  await withSignal(async (signal) => login(server, { username: args.username as string, password: password as string }, await registryOptions(args, signal)));
  process.stdout.write("Login Succeeded\n");
  return EXIT.ok;
}

export async function runLogout(args: Common & { server?: string }): Promise<number> {
  const server = registryOf(args.server);
  const removed = await logout(server, await registryOptions(args));
  process.stdout.write(removed ? `Removing login credentials for ${server}\n` : `Not logged in to ${server}\n`);
  return EXIT.ok;
}

/** A server argument as docker login takes it: host[:port], a URL, or nothing for docker.io. */
function registryOf(server: string | undefined): string {
  if (server === undefined || server === "") return "docker.io";
  const host = server.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  if (host === "index.docker.io" || host === "registry-1.docker.io") return "docker.io";
  return host;
}

function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? "").length))) ?? [];
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd((widths[column] ?? 0) + 3))).join("").trimEnd() + "\n").join("");
}

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes}B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = "B";
  for (const next of units) {
    if (value < 1000) break;
    value /= 1000;
    unit = next;
  }
  return `${value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : Math.round(value)}${unit}`;
}

function ago(iso: string): string {
  const time = Date.parse(iso);
  if (Number.isNaN(time)) return "N/A";
  const seconds = Math.max(0, (Date.now() - time) / 1000);
  const steps: [number, string][] = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"], [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (value < size) {
      const whole = Math.floor(value);
      return unit === "second" && whole < 1 ? "Less than a second ago" : `${whole} ${unit}${whole === 1 ? "" : "s"} ago`;
    }
    value /= size;
  }
  return "N/A";
}
