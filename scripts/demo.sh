#!/usr/bin/env bash
# The README's first command: install what is missing, build resil, and run
# the main job. Until `resil demo` exists, the main job is a short showcase of
# `resil run` retrying real commands.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target resil_cli >/dev/null
resil=$PWD/build/bin/resil

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

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step resil run --attempts 5 --base 200ms --cap 2s -- ./flaky.sh
"$resil" run --attempts 5 --base 200ms --cap 2s -- ./flaky.sh

step resil run --attempts 3 --base 100ms -- sh -c "'echo upstream says 503 >&2; exit 3'"
"$resil" run --attempts 3 --base 100ms -- sh -c 'echo upstream says 503 >&2; exit 3' || echo "(exit status $? — the last attempt's, so scripts see the real failure)"

step resil run --stop-on 2 --base 100ms -- sh -c "'echo bad credentials >&2; exit 2'"
"$resil" run --stop-on 2 --base 100ms -- sh -c 'echo bad credentials >&2; exit 2' || echo "(exit status $? — a final error is not retried)"

step resil run --attempts 10 --base 400ms --jitter none --max-time 1s -- false
"$resil" run --attempts 10 --base 400ms --jitter none --max-time 1s -- false || echo "(exit status $? — resil never sleeps past the deadline)"

printf '\nMore: %s --help, and man -l docs/resil.1\n' "$resil"
