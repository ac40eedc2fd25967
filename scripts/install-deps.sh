#!/usr/bin/env bash
# Installs every Debian package cellgate needs to build, run and test.
# Idempotent; used by the README, .ci/run and the Dockerfile alike.
# Usage: scripts/install-deps.sh [--runtime-only | --no-tests]
#   (nothing)        build, run and test: what the README's commands and CI need
#   --no-tests       build and run (the Dockerfile's build stage)
#   --runtime-only   run a built cellgate: kernels' Python, the shared libraries, bubblewrap
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libzmq3-dev cppzmq-dev nlohmann-json3-dev libsimdjson-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libssl-dev zlib1g-dev libjemalloc-dev
)
runtime_packages=(
  python3 python3-ipykernel python3-jupyter-client python3-zmq
  python3-numpy python3-pandas python3-matplotlib python3-pil
  bubblewrap procps
  # The shared libraries the binaries link (the -dev packages above depend on them).
  libgrpc++1.51 libprotobuf32 libzmq5 libabsl20220623 libssl3 libsimdjson14 zlib1g libjemalloc2
  libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
)
test_packages=(
  python3-grpcio python3-pytest python3-nbformat python3-nbclient python3-pytest-asyncio python3-pip
  openssl  # test certificates for TLS
  python3-prometheus-client  # parses the metrics endpoint in the tests
  python3-yaml yamllint  # the deploy/ manifests
  golang-go golang-google-grpc-dev golang-google-protobuf-dev protoc-gen-go protoc-gen-go-grpc
  clang libclang-rt-14-dev  # the libFuzzer smoke run
)

packages=("${runtime_packages[@]}")
case "${1:-}" in
  --runtime-only) ;;
  --no-tests) packages+=("${build_packages[@]}") ;;
  "") packages+=("${build_packages[@]}" "${test_packages[@]}") ;;
  *) echo "install-deps: unknown option $1 (--runtime-only, --no-tests)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
