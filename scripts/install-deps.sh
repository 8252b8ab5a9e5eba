#!/usr/bin/env bash
# Installs every build and test dependency of kvstore from Debian's archive.
# Idempotent: packages already present are skipped. Used by the README, CI
# and the Dockerfile, so there is one list to keep up to date.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev libxxhash-dev libabsl-dev libcpp-httplib-dev
  catch2 libcli11-dev libncurses-dev
  libbenchmark-dev gcovr
  python3 python3-zmq python3-msgpack
  clang libclang-rt-14-dev clang-format
  tmux iproute2 prometheus
)

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
