#!/usr/bin/env bash
# Runs the README's first session: generate the Python stubs, start the server on port 0,
# run examples/first_session.py against it, check what it printed.
set -euo pipefail
binary="$1"; repo="$2"
work="$(mktemp -d /tmp/cgr-XXXXXX)"
chmod 711 "$work"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

protoc -I"$repo/proto" --python_out="$work" --grpc_python_out="$work" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$repo"/proto/cellgate/v1/*.proto
"$binary" --listen=127.0.0.1:0 --port-file="$work/port" --runtime-dir="$work/r" \
  --state-dir="$work/state" --kernel-uid-base=$((500000 + $$ % 1000 * 64)) 2> "$work/server.log" &
server=$!
for _ in $(seq 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
[[ -s "$work/port" ]] || { cat "$work/server.log"; echo "server did not start"; exit 1; }

PYTHONPATH="$work" /usr/bin/python3 "$repo/examples/first_session.py" "127.0.0.1:$(cat "$work/port")" \
  | tee "$work/out"
grep -qx "last cell printed: 20" "$work/out"
grep -q "status: EXECUTION_STATUS_ERROR error: ZeroDivisionError" "$work/out"
grep -q "execution_finished" "$work/out"
echo "first session: ok"
