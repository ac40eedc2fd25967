#!/usr/bin/env bash
# Installs what is needed, builds, and starts the server with sane defaults (the README's
# run command). Extra arguments go to the server, e.g.
#   scripts/run.sh --listen=0.0.0.0:50051 --auth-token-file=tokens.txt
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo/build}"

"$repo/scripts/install-deps.sh"
BUILD_DIR="$build_dir" "$repo/scripts/build.sh" -DCELLGATE_BUILD_TESTS=OFF
state_dir="${CELLGATE_STATE_DIR:-$repo/.cellgate/state}"
mkdir -p "$state_dir"
exec "$build_dir/server/cellgate" --listen=127.0.0.1:50051 --state-dir="$state_dir" "$@"
