#!/usr/bin/env bash
# The README's first command: install what is missing, build resil, and run
# the main job: `resil demo`, a fleet of clients placing orders through an
# outage with naive retries and then with resil's (about 25 seconds), and a
# chart of both in build/resil-demo.svg. Then one short `resil run`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target resil_cli >/dev/null
resil=$PWD/build/bin/resil

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# The demo exits 1 if the resil run ever duplicated or lost an order: it
# checks itself, and so does this script (set -e).
step resil demo --svg build/resil-demo.svg
"$resil" demo --svg build/resil-demo.svg

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# A command that fails twice, then works: like a service that is restarting.
cat > flaky.sh <<'SH'
#!/bin/sh
n=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > count
if [ "$n" -le 2 ]; then echo "flaky.sh: connection refused (try $n)" >&2; exit 1; fi
echo "flaky.sh: connected on try $n"
SH
chmod +x flaky.sh

step resil run --attempts 5 --base 200ms --cap 2s -- ./flaky.sh
"$resil" run --attempts 5 --base 200ms --cap 2s -- ./flaky.sh

printf '\nMore: %s --help, and man -l docs/resil.1\n' "$resil"
