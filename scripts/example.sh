#!/usr/bin/env bash
# The main job: set up, then process the example project.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node bin/tsbuild.js parse -f fixtures/examples/hello/Dockerfile
