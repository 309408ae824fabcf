/** The state directory: --root, else $TSBUILD_ROOT, else /var/lib/tsbuild. */
export function stateRootDir(option: string | undefined): string {
  return option ?? process.env.TSBUILD_ROOT ?? "/var/lib/tsbuild";
}
