#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test (the README's test command).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo/build}"

"$repo/scripts/install-deps.sh"
BUILD_DIR="$build_dir" "$repo/scripts/build.sh" -DCELLGATE_BUILD_TESTS=ON
# Kernels take a core each while they start: two tests at a time suits small machines.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --timeout 600 -j2
# The clients, against the server just built; and the generated code must match proto/.
"$repo/scripts/gen-clients.sh" --check
CELLGATE_BINARY="$build_dir/server/cellgate" /usr/bin/python3 -m pytest "$repo/client/python/tests" \
  -q -p no:cacheprovider
CELLGATE_BINARY="$build_dir/server/cellgate" "$repo/client/go/run-tests.sh"
# deploy/: the manifests' YAML and what they pass the server; the Dockerfile's steps. The
# cell analyzer (kernels/analyzer) on its corpus.
CELLGATE_BINARY="$build_dir/server/cellgate" /usr/bin/python3 -m pytest "$repo/tests/deploy" \
  "$repo/tests/analyzer" -q -p no:cacheprovider
"$repo/scripts/check-image-steps.sh" "$build_dir"
"$repo/scripts/fuzz-smoke.sh"
