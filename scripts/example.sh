#!/usr/bin/env bash
# The main job: set up, then build the example project into an OCI image archive.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TSBUILD_ROOT="${TSBUILD_ROOT:-$PWD/.state}"
mkdir -p out
node bin/tsbuild.js build --progress plain -t hello:latest -o type=oci,dest=out/hello.tar fixtures/examples/hello
node bin/tsbuild.js build --progress quiet -o type=local,dest=out/hello-rootfs fixtures/examples/hello
echo "image archive: out/hello.tar; its filesystem:"
find out/hello-rootfs -mindepth 1 | sort
