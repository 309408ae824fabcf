/**
 * A process that attaches a namespace to the default network and never
 * releases it (the tests kill it with SIGKILL). argv[2]: the options as JSON.
 * Prints one JSON line once attached.
 */
import { attachDefaultNetwork, type AttachOptions } from "../../../src/runtime/network/index.ts";

const options = JSON.parse(process.argv[2] ?? "{}") as AttachOptions;
process.stdout.write(`${JSON.stringify({ attaching: process.pid })}\n`);
attachDefaultNetwork({ ...options, onNotice: () => undefined }).then(
  (attachment) => {
    process.stdout.write(`${JSON.stringify({ attached: { netnsPath: attachment.netnsPath, address: attachment.address, gateway: attachment.gateway } })}\n`);
    setInterval(() => undefined, 60_000);
  },
  (error: unknown) => {
    process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`);
    process.exit(1);
  },
);
