#!/usr/bin/env bash
# Runs the README's first session: start the server on port 0, run the README's Python block
# (taken from README.md itself) against it; then examples/first_session.py with stubs generated
# by protoc. Checks what each printed.
set -euo pipefail
binary="$1"; repo="$2"
work="$(mktemp -d /tmp/cgr-XXXXXX)"
chmod 711 "$work"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

# The block between the README's "python3 - <<'EOF'" and "EOF", aimed at the server's port.
sed -n "/^PYTHONPATH=client\/python \/usr\/bin\/python3 - <<'EOF'$/,/^EOF$/p" "$repo/README.md" \
  | sed '1d;$d' > "$work/readme_session.py"
[[ -s "$work/readme_session.py" ]] || { echo "no first session block in README.md"; exit 1; }

protoc -I"$repo/proto" --python_out="$work" --grpc_python_out="$work" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$repo"/proto/cellgate/v1/*.proto
"$binary" --listen=127.0.0.1:0 --port-file="$work/port" --runtime-dir="$work/r" \
  --state-dir="$work/state" --kernel-uid-base=$((500000 + $$ % 1000 * 64)) 2> "$work/server.log" &
server=$!
for _ in $(seq 300); do [[ -s "$work/port" ]] && break; sleep 0.1; done
[[ -s "$work/port" ]] || { cat "$work/server.log"; echo "server did not start"; exit 1; }

target="127.0.0.1:$(cat "$work/port")"
sed -i "s/127.0.0.1:50051/$target/" "$work/readme_session.py"
(cd "$repo" && PYTHONPATH=client/python /usr/bin/python3 "$work/readme_session.py") \
  | tee "$work/readme_out"
[[ "$(head -1 "$work/readme_out")" == "20" ]]
grep -qx "ZeroDivisionError: division by zero" "$work/readme_out"
grep -q "execution_finished" "$work/readme_out"

PYTHONPATH="$work" /usr/bin/python3 "$repo/examples/first_session.py" "127.0.0.1:$(cat "$work/port")" \
  | tee "$work/out"
grep -qx "last cell printed: 20" "$work/out"
grep -q "status: EXECUTION_STATUS_ERROR error: ZeroDivisionError" "$work/out"
grep -q "execution_finished" "$work/out"
echo "first session: ok"
