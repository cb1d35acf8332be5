#!/usr/bin/env bash
# Install what resil needs to build and test, if it is missing.
#
#   scripts/deps.sh [--fuzz]
#
# As root it runs apt-get; otherwise it prints the exact command to run and
# exits 1. Nothing is downloaded when everything is already installed.
set -euo pipefail

pkgs=(cmake make gcc libc6-dev pkg-config libcmocka-dev libsqlite3-dev libcurl4-openssl-dev libmicrohttpd-dev libssl-dev libhiredis-dev libpq-dev redis-server postgresql)
for arg in "$@"; do
  case "$arg" in
    --fuzz) pkgs+=(clang libclang-rt-dev) ;;
    *) echo "deps.sh: unknown option '$arg'" >&2; exit 64 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps.sh: missing packages: ${missing[*]}" >&2
  echo "deps.sh: run: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
