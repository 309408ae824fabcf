/**
 * A token service for distribution's `auth: token`: checks Basic credentials (or an OAuth2
 * refresh token), grants scopes by a policy, and signs RS256 JWTs with a key whose
 * self-signed certificate (openssl req -x509) is the registry's root bundle; the
 * certificate goes in the JWT header's x5c.
 */
import { spawnSync } from "node:child_process";
import { createSign, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TokenRequest {
  method: string;
  /** The user the credentials (or refresh token) proved, if any. */
  user: string | undefined;
  scopes: string[];
  grant: "basic" | "anonymous" | "refresh_token" | "rejected";
}

export interface TokenServer {
  url: string;
  service: string;
  issuer: string;
  certPath: string;
  requests: TokenRequest[];
  /** user → password. */
  users: Map<string, string>;
  /** refresh token → user (identity tokens). */
  refreshTokens: Map<string, string>;
  /** Actions a user (undefined: anonymous) may do on a repository; default: all asked for users, pull of "public/*" for anyone. */
  policy: (user: string | undefined, repository: string, actions: string[]) => string[];
  stop(): Promise<void>;
}

export async function startTokenServer(): Promise<TokenServer> {
  const dir = mkdtempSync(join(tmpdir(), "tsbuild-token-"));
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const result = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=tsbuild-test-token-issuer"], {
    encoding: "utf8",
  });
  if (result.status !== 0) throw new Error(`openssl failed: ${result.stderr}`);
  const key = readFileSync(keyPath, "utf8");
  const certDer = readFileSync(certPath, "utf8").replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");

  const server: TokenServer = {
    url: "",
    service: "tsbuild-test-registry",
    issuer: "tsbuild-test-issuer",
    certPath,
    requests: [],
    users: new Map(),
    refreshTokens: new Map(),
    policy: (user, repository, actions) => (user !== undefined ? actions : repository.startsWith("public/") ? actions.filter((action) => action === "pull") : []),
    stop: async () => undefined,
  };

  const sign = (user: string | undefined, scopes: string[]): string => {
    const access = scopes.flatMap((scope) => {
      const [type, name, actions] = parseScope(scope);
      if (type !== "repository") return [];
      const granted = server.policy(user, name, actions);
      return granted.length > 0 ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "RS256", x5c: [certDer] };
    const claims = { iss: server.issuer, sub: user ?? "", aud: server.service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const body = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign("RSA-SHA256").update(body).sign(key);
    return `${body}.${b64url(signature)}`;
  };

  const http: Server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      res.writeHead(500).end(String(error));
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== "/token") return void res.writeHead(404).end();
    const deny = (scopes: string[]) => {
      server.requests.push({ method: req.method ?? "", user: undefined, scopes, grant: "rejected" });
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
    };
    let user: string | undefined;
    let scopes: string[];
    let grant: TokenRequest["grant"];
    if (req.method === "POST") {
      const form = new URLSearchParams(await readBody(req));
      scopes = (form.get("scope") ?? "").split(" ").filter(Boolean);
      if (form.get("grant_type") !== "refresh_token") return deny(scopes);
      user = server.refreshTokens.get(form.get("refresh_token") ?? "");
      if (user === undefined) return deny(scopes);
      grant = "refresh_token";
    } else {
      scopes = url.searchParams.getAll("scope");
      const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? "");
      if (basic) {
        const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        const [name, password] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
        if (server.users.get(name) !== password) return deny(scopes);
        user = name;
        grant = "basic";
      } else {
        grant = "anonymous";
      }
    }
    server.requests.push({ method: req.method ?? "", user, scopes, grant });
    const token = sign(user, scopes);
    const field = grant === "refresh_token" ? "access_token" : "token";
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ [field]: token, expires_in: 300, issued_at: new Date().toISOString() }));
  };
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  server.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  server.stop = async () => {
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  };
  return server;
}

function parseScope(scope: string): [string, string, string[]] {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  return [scope.slice(0, first), scope.slice(first + 1, last), scope.slice(last + 1).split(",").filter(Boolean)];
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => resolve(body));
    req.on("error", reject);
  });
}
