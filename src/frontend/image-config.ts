import type { Platform } from "../llb/index.ts";

/** The runtime part of an OCI image config (`config` in the JSON). */
export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Shell?: string[];
  Healthcheck?: HealthConfig;
  OnBuild?: string[] | null;
  ArgsEscaped?: boolean;
}

export interface HealthConfig {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface HistoryEntry {
  created?: string;
  created_by: string;
  comment?: string;
  empty_layer?: boolean;
  author?: string;
}

/** An OCI image config without `rootfs` (the exporter adds the layers' diff ids). */
export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  author?: string;
  created?: string;
  config: ContainerConfig;
  history: HistoryEntry[];
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export function emptyImageConfig(platform: Platform): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: [`PATH=${DEFAULT_PATH}`] },
    history: [],
  };
}

export function cloneImageConfig(image: ImageConfig): ImageConfig {
  return structuredClone(image);
}

/** Value of a variable in an `Env` list (`NAME=value` entries). */
export function getEnv(env: readonly string[] | undefined, name: string): string | undefined {
  for (const entry of env ?? []) {
    const equals = entry.indexOf("=");
    if ((equals < 0 ? entry : entry.slice(0, equals)) === name) return equals < 0 ? "" : entry.slice(equals + 1);
  }
  return undefined;
}

/** Sets a variable in an `Env` list, keeping its position when it exists. */
export function setEnv(env: string[], name: string, value: string): void {
  const index = env.findIndex((entry) => entry === name || entry.startsWith(`${name}=`));
  if (index >= 0) env[index] = `${name}=${value}`;
  else env.push(`${name}=${value}`);
}
