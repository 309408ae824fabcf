/** Replaced at bundle time with package.json's version. */
declare const __TSBUILD_VERSION__: string | undefined;
export const VERSION = typeof __TSBUILD_VERSION__ === "string" ? __TSBUILD_VERSION__ : "0.0.0-dev";
