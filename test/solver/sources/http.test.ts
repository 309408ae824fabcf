import { createHash } from "node:crypto";
import { lstatSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SourceOp } from "../../../src/llb/index.ts";
import { fetchToFile, fileNameOf, loadHttpSource, parseChecksum } from "../../../src/solver/sources/http.ts";
import { StateRoot } from "../../../src/solver/store/index.ts";
import { UserError } from "../../../src/user-error.ts";
import { freshDir, startHttpServer, staticFile, type TestServer } from "./helpers.ts";

const FAST = { http: { retryDelayMs: 10 } };
const LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT";

let server: TestServer;
beforeAll(async () => {
  server = await startHttpServer();
});
afterAll(async () => {
  await server.close();
});

function digest(algorithm: string, content: string): string {
  return `${algorithm}:${createHash(algorithm).update(content).digest("hex")}`;
}

function op(url: string, checksum?: string): SourceOp {
  return { type: "source", identifier: url, ...(checksum ? { attrs: { checksum } } : {}) };
}

async function store(): Promise<StateRoot> {
  return StateRoot.open(freshDir("root"));
}

function requestsTo(path: string) {
  return server.requests.filter((request) => request.path === path);
}

describe("fileNameOf", () => {
  it("takes the URL path's last component, decoded", () => {
    expect(fileNameOf("https://example.com/dir/app.tar.gz?x=1")).toBe("app.tar.gz");
    expect(fileNameOf("https://example.com/a%20b.txt")).toBe("a b.txt");
    expect(fileNameOf("https://example.com/dir/")).toBe("dir");
    expect(fileNameOf("https://example.com/")).toBe("__unnamed__");
  });
});

describe("parseChecksum", () => {
  it("accepts sha256, sha384 and sha512", () => {
    expect(parseChecksum(digest("sha256", "x")).algorithm).toBe("sha256");
    expect(parseChecksum(digest("sha384", "x")).algorithm).toBe("sha384");
    expect(parseChecksum(digest("sha512", "x").toUpperCase().replace("SHA512", "sha512")).digest).toBe(digest("sha512", "x"));
    expect(() => parseChecksum("md5:abc")).toThrow(UserError);
    expect(() => parseChecksum("sha256:abc")).toThrow(/not a digest/);
  });
});

describe("loadHttpSource", () => {
  it("downloads into a one-file layer: mode 0600, mtime from Last-Modified", async () => {
    server.route("/files/hello.txt", staticFile({ content: "hello\n", etag: '"v1"', lastModified: LAST_MODIFIED }));
    const root = await store();
    const loaded = await loadHttpSource(op(server.url("/files/hello.txt")), root, FAST);
    expect(loaded.layers).toHaveLength(1);
    const dir = loaded.layers[0]!.dir;
    expect(readdirSync(dir)).toEqual(["hello.txt"]);
    const stats = lstatSync(join(dir, "hello.txt"));
    expect(stats.mode & 0o7777).toBe(0o600);
    expect(stats.mtime.toISOString()).toBe(new Date(LAST_MODIFIED).toISOString());
    expect(readFileSync(join(dir, "hello.txt"), "utf8")).toBe("hello\n");
    expect(loaded.cacheKey).toBe(`sha256:${loaded.layers[0]!.id}`);
  });

  it("gives the epoch as mtime without Last-Modified", async () => {
    server.route("/no-date.txt", staticFile({ content: "x" }));
    const loaded = await loadHttpSource(op(server.url("/no-date.txt")), await store(), FAST);
    expect(lstatSync(join(loaded.layers[0]!.dir, "no-date.txt")).mtimeMs).toBe(0);
  });

  it("verifies a right checksum and then reuses the result without asking the server", async () => {
    server.route("/checked.txt", staticFile({ content: "checked\n", etag: '"c1"' }));
    const root = await store();
    for (const algorithm of ["sha256", "sha384", "sha512"]) {
      const first = await loadHttpSource(op(server.url("/checked.txt"), digest(algorithm, "checked\n")), root, FAST);
      expect(readFileSync(join(first.layers[0]!.dir, "checked.txt"), "utf8")).toBe("checked\n");
    }
    const before = requestsTo("/checked.txt").length;
    const again = await loadHttpSource(op(server.url("/checked.txt"), digest("sha256", "checked\n")), root, FAST);
    expect(requestsTo("/checked.txt").length).toBe(before);
    expect(readFileSync(join(again.layers[0]!.dir, "checked.txt"), "utf8")).toBe("checked\n");
  });

  it("refuses a wrong checksum, naming both digests", async () => {
    server.route("/wrong.txt", staticFile({ content: "actual\n" }));
    const expected = digest("sha256", "expected\n");
    const error = await loadHttpSource(op(server.url("/wrong.txt"), expected), await store(), FAST).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toContain(expected);
    expect((error as Error).message).toContain(digest("sha256", "actual\n"));
    expect((error as Error).message).toContain("checksum mismatch");
  });

  it("retries a 500 and succeeds on the next 200", async () => {
    let calls = 0;
    server.route("/flaky.txt", (_request, response) => {
      calls++;
      if (calls === 1) response.writeHead(500).end("oops");
      else response.writeHead(200).end("finally\n");
    });
    const loaded = await loadHttpSource(op(server.url("/flaky.txt")), await store(), FAST);
    expect(calls).toBe(2);
    expect(readFileSync(join(loaded.layers[0]!.dir, "flaky.txt"), "utf8")).toBe("finally\n");
  });

  it("retries a dropped connection", async () => {
    let calls = 0;
    server.route("/reset.txt", (request, response) => {
      calls++;
      if (calls === 1) {
        request.socket.destroy();
        return;
      }
      response.writeHead(200).end("after reset\n");
    });
    const loaded = await loadHttpSource(op(server.url("/reset.txt")), await store(), FAST);
    expect(calls).toBe(2);
    expect(readFileSync(join(loaded.layers[0]!.dir, "reset.txt"), "utf8")).toBe("after reset\n");
  });

  it("gives up after 3 retries", async () => {
    let calls = 0;
    server.route("/down.txt", (_request, response) => {
      calls++;
      response.writeHead(503).end();
    });
    await expect(loadHttpSource(op(server.url("/down.txt")), await store(), FAST)).rejects.toThrow(/503 Service Unavailable \(tried 4 times\)/);
    expect(calls).toBe(4);
  });

  it("does not retry a 404", async () => {
    await expect(loadHttpSource(op(server.url("/missing.txt")), await store(), FAST)).rejects.toThrow(/404 Not Found/);
    expect(requestsTo("/missing.txt")).toHaveLength(1);
  });

  it("follows redirects; the file keeps the name of the URL written", async () => {
    server.route("/old/name.txt", (_request, response) => response.writeHead(302, { location: "/new/other.txt" }).end());
    server.route("/new/other.txt", staticFile({ content: "moved\n" }));
    const loaded = await loadHttpSource(op(server.url("/old/name.txt")), await store(), FAST);
    expect(readdirSync(loaded.layers[0]!.dir)).toEqual(["name.txt"]);
    expect(readFileSync(join(loaded.layers[0]!.dir, "name.txt"), "utf8")).toBe("moved\n");
  });

  it("times out a server that never answers", async () => {
    server.route("/stall.txt", () => undefined);
    const dir = freshDir("stall");
    await expect(fetchToFile(server.url("/stall.txt"), join(dir, "f"), { headersTimeoutMs: 200, retries: 1, retryDelayMs: 10 })).rejects.toThrow(/tried 2 times/);
  });

  describe("without a checksum, the URL is checked again", () => {
    it("with If-None-Match: unchanged reuses the layer, changed downloads again", async () => {
      const file = { content: "one\n", etag: '"e1"', lastModified: LAST_MODIFIED };
      server.route("/etag.txt", staticFile(file));
      const root = await store();
      const first = await loadHttpSource(op(server.url("/etag.txt")), root, FAST);
      const second = await loadHttpSource(op(server.url("/etag.txt")), root, FAST);
      expect(second.layers[0]!.id).toBe(first.layers[0]!.id);
      expect(second.cacheKey).toBe(first.cacheKey);
      const seen = requestsTo("/etag.txt");
      expect(seen).toHaveLength(2);
      expect(seen[1]!.ifNoneMatch).toBe('"e1"');

      file.content = "two\n";
      file.etag = '"e2"';
      const third = await loadHttpSource(op(server.url("/etag.txt")), root, FAST);
      expect(third.cacheKey).not.toBe(first.cacheKey);
      expect(readFileSync(join(third.layers[0]!.dir, "etag.txt"), "utf8")).toBe("two\n");
    });

    it("with If-Modified-Since when there is no ETag", async () => {
      const file: { content: string; lastModified: string } = { content: "dated\n", lastModified: LAST_MODIFIED };
      server.route("/dated.txt", staticFile(file));
      const root = await store();
      const first = await loadHttpSource(op(server.url("/dated.txt")), root, FAST);
      const second = await loadHttpSource(op(server.url("/dated.txt")), root, FAST);
      expect(second.cacheKey).toBe(first.cacheKey);
      expect(requestsTo("/dated.txt")[1]!.ifModifiedSince).toBe(LAST_MODIFIED);

      file.content = "redated\n";
      file.lastModified = "Thu, 22 Oct 2015 07:28:00 GMT";
      const third = await loadHttpSource(op(server.url("/dated.txt")), root, FAST);
      expect(readFileSync(join(third.layers[0]!.dir, "dated.txt"), "utf8")).toBe("redated\n");
      expect(lstatSync(join(third.layers[0]!.dir, "dated.txt")).mtime.toISOString()).toBe(new Date(file.lastModified).toISOString());
    });

    it("by content when the server gives no validators", async () => {
      const file = { content: "bare\n" };
      server.route("/bare.txt", staticFile(file));
      const root = await store();
      const first = await loadHttpSource(op(server.url("/bare.txt")), root, FAST);
      const second = await loadHttpSource(op(server.url("/bare.txt")), root, FAST);
      expect(second.cacheKey).toBe(first.cacheKey);
      file.content = "changed\n";
      const third = await loadHttpSource(op(server.url("/bare.txt")), root, FAST);
      expect(third.cacheKey).not.toBe(first.cacheKey);
    });

    it("unconditionally with noCache", async () => {
      server.route("/forced.txt", staticFile({ content: "f\n", etag: '"f"' }));
      const root = await store();
      await loadHttpSource(op(server.url("/forced.txt")), root, FAST);
      await loadHttpSource(op(server.url("/forced.txt")), root, { ...FAST, noCache: true });
      expect(requestsTo("/forced.txt")[1]!.ifNoneMatch).toBeUndefined();
    });
  });
});
