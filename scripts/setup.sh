#!/usr/bin/env bash
# Installs what tsbuild needs on a fresh Debian machine (apt packages, npm
# dependencies) and builds the CLI. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages.txt)
missing=()
for package in "${wanted[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Compile the sandbox helper that runs RUN steps (native/build/tsbuild-sandbox);
# make rebuilds it only when native/ changed.
make -s -C native

if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # Not `npm ci`: it rejects lock files that lack other platforms' optional
  # packages (npm/cli#4828), which npm writes here. The lock still pins versions.
  npm install --no-save --no-audit --no-fund --loglevel=error   # also builds (prepare)
else
  npm run --silent build
fi
