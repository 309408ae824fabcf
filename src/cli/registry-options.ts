import type { Argv } from "yargs";
import type { RegistryOptions } from "../registry/index.ts";

/** The global options that say how to reach registries (every command that pulls or pushes uses them). */
export interface RegistryArgs {
  registryMirror: string[];
  insecureRegistry: string[];
  registryConfig?: string;
}

const list = {
  type: "string",
  nargs: 1,
  default: [] as string[],
  global: true,
  coerce: (value: string | string[]) => (Array.isArray(value) ? value : [value]),
} as const;

export function registryOptionsOf(yargs: Argv): Argv {
  return yargs
    .option("registry-mirror", { ...list, describe: "Pull REGISTRY's images from a mirror first: REGISTRY=URL (a bare URL mirrors docker.io)" })
    .option("insecure-registry", { ...list, describe: "Allow plain http (and unverified TLS) for this registry host[:port], or the registries in this network (CIDR); loopback registries always may use http" })
    .option("registry-config", { type: "string", global: true, describe: "Registry hosts file (default: $TSBUILD_REGISTRY_CONFIG or /etc/tsbuild/registries.json)" });
}

/** Registry client options from the global options (the registry module is loaded only here, when it is needed). */
export async function registryOptions(args: Partial<RegistryArgs>, signal?: AbortSignal): Promise<RegistryOptions> {
  const { registryHosts } = await import("../registry/index.ts");
  const hosts = await registryHosts({
    mirrors: args.registryMirror ?? [],
    insecure: args.insecureRegistry ?? [],
    ...(args.registryConfig !== undefined ? { configFile: args.registryConfig } : {}),
  });
  return { hosts, ...(signal ? { signal } : {}) };
}
