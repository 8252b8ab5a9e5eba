#!/usr/bin/env bash
# Installs every build and test dependency of kvstore from Debian's archive.
# Idempotent: packages already present are skipped. Used by the README, CI
# and the Dockerfile, so there is one list to keep up to date.
#
#   scripts/install-deps.sh           everything below
#   scripts/install-deps.sh --build   only what compiling kvstore needs (the
#                                     Dockerfile's build stage)
set -euo pipefail

# Compiling kvstore, its tools and the monitor.
build_packages=(
  build-essential cmake pkg-config git
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libxxhash-dev libabsl-dev libcpp-httplib-dev
  libcli11-dev libncurses-dev
)
# The tests, benchmarks, fuzzing and formatting.
test_packages=(
  catch2
  libbenchmark-dev gcovr
  python3 python3-zmq python3-msgpack
  clang libclang-rt-14-dev clang-format
  tmux iproute2 prometheus
)
# The container test (scripts/container-test.sh, ctest label "container"):
# Podman as root with the runc runtime, netavark and aardvark-dns for its
# networks and their names, iptables for published ports, catatonit for the
# compose file's `init: true`, podman-compose, and debootstrap for the base
# image.
container_packages=(
  podman runc netavark aardvark-dns iptables catatonit podman-compose debootstrap
)

case "${1:-}" in
  "") packages=("${build_packages[@]}" "${test_packages[@]}" "${container_packages[@]}") ;;
  --build) packages=("${build_packages[@]}") ;;
  *)
    echo "usage: $0 [--build]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
