#!/usr/bin/env bash
# Vets and tests the Go client offline, in GOPATH mode against Debian's Go packages
# (/usr/share/gocode), with the real server binary:
#   $CELLGATE_BINARY, default <repo>/build/server/cellgate.
# Usage: client/go/run-tests.sh [extra `go test` flags, e.g. -run TestErrors]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd -P)"
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src"
ln -s "$here" "$gopath/src/cellgate"
export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS=
if [[ -z "${GOCACHE:-}${XDG_CACHE_HOME:-}${HOME:-}" ]]; then export GOCACHE="$gopath/cache"; fi
export CELLGATE_BINARY="${CELLGATE_BINARY:-$(dirname "$(dirname "$here")")/build/server/cellgate}"
cd "$gopath/src/cellgate"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
  echo "run-tests: not gofmt-clean: $unformatted" >&2
  exit 1
fi
go vet ./...
go test -v -count=1 -timeout 5m "$@" ./...
