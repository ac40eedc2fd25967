#!/usr/bin/env bash
# The Dockerfile's steps, as far as a machine without a Docker engine can take them: the
# install script in each of its modes, `cmake --install` into a prefix like the image's
# /opt/cellgate, and the installed binaries serving and probing a request from there (the
# installed kernelspecs found beside them). Also hadolint, where it is installed.
# Usage: scripts/check-image-steps.sh [build dir, default build/]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${1:-${BUILD_DIR:-$repo/build}}"

"$repo/scripts/install-deps.sh" --no-tests
"$repo/scripts/install-deps.sh" --runtime-only

prefix="$(mktemp -d /tmp/cellgate-image.XXXXXX)"
chmod 711 "$prefix"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$prefix"
}
trap cleanup EXIT
cmake --install "$build_dir" --prefix "$prefix/opt" >/dev/null
for f in bin/cellgate bin/cellgate-health share/cellgate/kernels/python3/kernel.json; do
  [[ -e "$prefix/opt/$f" ]] || { echo "check-image-steps: $f was not installed" >&2; exit 1; }
done

"$prefix/opt/bin/cellgate" --listen=127.0.0.1:0 --port-file="$prefix/port" --state-dir= \
  --runtime-dir="$prefix/run" --kernel-uid-base=690000 2>"$prefix/log" &
pid=$!
for _ in $(seq 300); do [[ -s "$prefix/port" ]] && break; sleep 0.1; done
[[ -s "$prefix/port" ]] || { cat "$prefix/log" >&2; exit 1; }
"$prefix/opt/bin/cellgate-health" --target="127.0.0.1:$(cat "$prefix/port")"
grep -q "kernels_dir=$prefix/opt/share/cellgate/kernels" "$prefix/log" || {
  echo "check-image-steps: the installed server did not find its installed kernelspecs" >&2
  cat "$prefix/log" >&2
  exit 1
}

if command -v hadolint >/dev/null; then
  hadolint "$repo/Dockerfile" "$repo/deploy/compose/agent.Dockerfile"
else
  echo "check-image-steps: hadolint is not in Debian 12; the Dockerfile's flags are checked by tests/deploy"
fi
echo "check-image-steps: install script modes, installed layout and installed server OK"
