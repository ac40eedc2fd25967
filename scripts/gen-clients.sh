#!/usr/bin/env bash
# Regenerates the Python and Go client code from proto/ with Debian's protoc and plugins.
# (The C++ code is generated at build time by CMake.) The generated files are committed, so that
# `pip install ./client/python` and Go builds need no protoc.
#   scripts/gen-clients.sh           write the generated files
#   scripts/gen-clients.sh --check   fail if the committed files differ from what proto/ gives
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/python" "$out/go"

protos=("$repo"/proto/cellgate/v1/*.proto)
protoc -I"$repo/proto" \
  --python_out="$out/python" \
  --grpc_python_out="$out/python" --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
  --pyi_out="$out/python" \
  "${protos[@]}"
protoc -I"$repo/proto" \
  --go_out="$out/go" --go_opt=paths=source_relative \
  --go-grpc_out="$out/go" --go-grpc_opt=paths=source_relative \
  "${protos[@]}"

# Python: the package `cellgate` holds the generated `cellgate.v1` modules.
python_dir="$repo/client/python/cellgate/v1"
# Go: the module `cellgate` (client/go) holds the generated package `cellgate/v1`.
go_dir="$repo/client/go/v1"

if [[ "${1:-}" == "--check" ]]; then
  stale=0
  diff -r -x __init__.py -x __pycache__ "$out/python/cellgate/v1" "$python_dir" > /dev/null || stale=1
  diff -r "$out/go/cellgate/v1" "$go_dir" > /dev/null || stale=1
  if ((stale)); then
    echo "gen-clients: generated client code is stale; run scripts/gen-clients.sh and commit" >&2
    diff -r -x __init__.py -x __pycache__ "$out/python/cellgate/v1" "$python_dir" | head -20 >&2 || true
    diff -r "$out/go/cellgate/v1" "$go_dir" | head -20 >&2 || true
    exit 1
  fi
  echo "gen-clients: generated client code is up to date"
  exit 0
fi

mkdir -p "$python_dir" "$go_dir"
find "$python_dir" -name '*_pb2*.py*' -delete
find "$go_dir" -name '*.pb.go' -delete
cp "$out"/python/cellgate/v1/* "$python_dir/"
[[ -f "$python_dir/__init__.py" ]] || echo '"""Generated from proto/cellgate/v1 by scripts/gen-clients.sh."""' > "$python_dir/__init__.py"
cp "$out"/go/cellgate/v1/*.go "$go_dir/"
echo "gen-clients: wrote $python_dir and $go_dir"
