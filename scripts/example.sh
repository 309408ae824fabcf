#!/usr/bin/env bash
# The main job: set up, then build the examples into the local image store and into image
# archives (OCI, and docker's for docker load), and run the greeter's program.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash fixtures/make-base-images.sh amd64
export TSBUILD_ROOT="${TSBUILD_ROOT:-$PWD/.state}"
mkdir -p out
tsbuild() { node bin/tsbuild.js "$@"; }

# A multi-stage build with RUN steps, a cache mount and a heredoc script, on the busybox base.
tsbuild build --progress plain -t greeter:latest \
  --build-context busybox=oci-layout://fixtures/images/busybox-amd64:latest \
  -o type=image -o type=oci,dest=out/greeter.tar -o type=docker,dest=out/greeter-docker.tar \
  -o type=local,dest=out/greeter-rootfs fixtures/examples/greeter
# A COPY-only build from scratch.
tsbuild build --progress plain -t hello:latest -o type=oci,dest=out/hello.tar fixtures/examples/hello

echo
tsbuild images
tsbuild history greeter
echo
echo "images: out/greeter.tar, out/hello.tar (OCI archives), out/greeter-docker.tar (docker load -i)"
echo "greeter's filesystem is in out/greeter-rootfs; its program says:"
chroot out/greeter-rootfs /usr/local/bin/greet
