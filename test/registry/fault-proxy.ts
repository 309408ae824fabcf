/**
 * A loopback HTTP proxy in front of a registry that injects faults into the requests
 * matching a rule: error statuses (503, 429 + Retry-After), canned answers, a connection
 * reset after K bytes of the body, a truncated body (Content-Length shortened), wrong
 * bytes (same length), or a body that stalls. It logs every request it forwards.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export type Fault =
  | { kind: "status"; status: number; headers?: Record<string, string>; body?: string | Buffer }
  | { kind: "reset"; afterBytes: number }
  | { kind: "truncate"; bytes: number }
  | { kind: "corrupt" }
  | { kind: "stall"; afterBytes: number };

export interface FaultRule {
  method?: string;
  path: RegExp;
  /** How many matching requests get the fault (then it is spent). */
  times: number;
  /** How many matching requests pass untouched before the fault applies (default 0). */
  skip?: number;
  fault: Fault;
}

export interface LoggedRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  /** The fault applied, if any. */
  fault?: Fault["kind"];
}

export interface FaultProxy {
  /** "127.0.0.1:PORT". */
  host: string;
  requests: LoggedRequest[];
  rules: FaultRule[];
  add(rule: FaultRule): void;
  clear(): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: { host: string }): Promise<FaultProxy> {
  const [targetHost, targetPort] = splitHost(target.host);
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = {
    host: "",
    requests: [],
    rules: [],
    add: (rule) => proxy.rules.push(rule),
    clear: () => {
      proxy.rules.length = 0;
      proxy.requests.length = 0;
    },
    stop: async () => undefined,
  };

  const server: Server = createServer((req, res) => {
    let rule = proxy.rules.find((r) => r.times > 0 && (r.method === undefined || r.method === req.method) && r.path.test(req.url ?? ""));
    if (rule?.skip) {
      rule.skip--;
      rule = undefined;
    }
    if (rule) rule.times--;
    const fault = rule?.fault;
    proxy.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, ...(fault ? { fault: fault.kind } : {}) });
    if (fault?.kind === "status") {
      req.resume();
      const body = fault.body ?? "";
      res.writeHead(fault.status, { "content-length": String(Buffer.byteLength(body)), ...fault.headers });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    const upstream = httpRequest({ host: targetHost, port: targetPort, method: req.method, path: req.url, headers: req.headers }, (response) => {
      if (fault === undefined || req.method === "HEAD" || (response.statusCode ?? 0) >= 300) {
        res.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(res);
        return;
      }
      void applyFault(fault, response, res).catch(() => res.destroy());
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.stop = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return proxy;
}

async function applyFault(fault: Exclude<Fault, { kind: "status" }>, response: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const headers = { ...response.headers };
  const status = response.statusCode ?? 200;
  switch (fault.kind) {
    case "reset": {
      res.writeHead(status, headers);
      res.write(body.subarray(0, fault.afterBytes));
      // Let the bytes reach the client, then reset the connection (RST, not a clean close).
      await new Promise((resolve) => setTimeout(resolve, 50));
      res.socket?.resetAndDestroy();
      return;
    }
    case "truncate": {
      const part = body.subarray(0, fault.bytes);
      res.writeHead(status, { ...headers, "content-length": String(part.length) });
      res.end(part);
      return;
    }
    case "corrupt": {
      const wrong = Buffer.from(body);
      for (let i = 0; i < wrong.length; i += 97) wrong[i] = wrong[i]! ^ 0xff;
      res.writeHead(status, headers);
      res.end(wrong);
      return;
    }
    case "stall": {
      res.writeHead(status, headers);
      res.write(body.subarray(0, fault.afterBytes));
      return; // never ends: the client's body timeout (or abort) has to act
    }
  }
}

function splitHost(host: string): [string, number] {
  const colon = host.lastIndexOf(":");
  return [host.slice(0, colon).replace(/^\[|\]$/g, ""), Number(host.slice(colon + 1))];
}
