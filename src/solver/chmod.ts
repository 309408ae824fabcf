/**
 * Applies a `--chmod` value to a mode: octal (`0755`) replaces the permission
 * bits; symbolic (`u=rwx,go+rx`, `a-w`, `+X`) changes them as chmod(1) does.
 */
export function applyChmod(spec: string, mode: number, isDirectory: boolean): number {
  if (/^[0-7]{1,4}$/.test(spec)) return (mode & ~0o7777) | Number.parseInt(spec, 8);
  let result = mode;
  for (const clause of spec.split(",")) {
    const match = /^([ugoa]*)([-+=])([rwxXst]*|[ugo])$/.exec(clause);
    if (!match) throw new Error(`invalid --chmod "${spec}"`);
    const [, who = "", operator, perms = ""] = match;
    const targets = who === "" || who.includes("a") ? "ugo" : who;
    let bits = 0;
    for (const perm of perms) {
      if (perm === "u") bits |= spreadBits((result >> 6) & 7, targets);
      else if (perm === "g") bits |= spreadBits((result >> 3) & 7, targets);
      else if (perm === "o") bits |= spreadBits(result & 7, targets);
      else bits |= permissionBits(perm, targets, isDirectory || (result & 0o111) !== 0);
    }
    const mask = targetMask(targets);
    if (operator === "+") result |= bits;
    else if (operator === "-") result &= ~bits;
    else result = (result & ~mask) | bits;
  }
  return result;
}

function spreadBits(rwx: number, targets: string): number {
  let bits = 0;
  if (targets.includes("u")) bits |= rwx << 6;
  if (targets.includes("g")) bits |= rwx << 3;
  if (targets.includes("o")) bits |= rwx;
  return bits;
}

function permissionBits(perm: string, targets: string, executableX: boolean): number {
  switch (perm) {
    case "r":
      return spreadBits(4, targets);
    case "w":
      return spreadBits(2, targets);
    case "x":
      return spreadBits(1, targets);
    case "X":
      return executableX ? spreadBits(1, targets) : 0;
    case "s":
      return (targets.includes("u") ? 0o4000 : 0) | (targets.includes("g") ? 0o2000 : 0);
    case "t":
      return 0o1000;
    default:
      return 0;
  }
}

function targetMask(targets: string): number {
  return spreadBits(7, targets) | (targets.includes("u") ? 0o4000 : 0) | (targets.includes("g") ? 0o2000 : 0) | (targets.includes("o") ? 0o1000 : 0);
}
