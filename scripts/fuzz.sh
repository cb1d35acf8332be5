#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang and run each for a while.
#
#   scripts/fuzz.sh [SECONDS]      (default 20 seconds per harness)
#
# Configures its own build directory, build-fuzz/, at the top of the source
# tree. Each harness runs on a temporary copy of its seed corpus under
# fuzz/corpus/, so nothing is written into the repository; crash reproducers
# go to the temporary directory, which is kept (and printed) on failure.
# Exits non-zero if a harness finds a crash, leak, timeout or property
# violation. Prints one line per harness with its number of executions.
set -euo pipefail

duration="${1:-20}"
if ! [[ "$duration" =~ ^[0-9]+$ ]] || [ "$duration" -lt 1 ]; then
  echo "usage: $0 [SECONDS]   (a positive whole number, default 20)" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$root/build-fuzz"
harnesses=(fuzz_http_date fuzz_duration)
corpora=(http_date duration)

command -v clang >/dev/null || { echo "fuzz.sh: clang not found" >&2; exit 2; }
if [ -f "$build/CMakeCache.txt" ] &&
   ! grep -q '^CMAKE_C_COMPILER:[A-Z]*=.*clang' "$build/CMakeCache.txt"; then
  echo "fuzz.sh: $build was configured with another compiler; remove it" >&2
  exit 2
fi

# The harnesses link the core objects directly, so the optional components
# (and their libraries) stay out of the fuzz build.
CC=clang cmake -S "$root" -B "$build" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRESIL_BUILD_FUZZ=ON -DRESIL_BUILD_TESTS=OFF -DRESIL_BUILD_CLI=OFF \
  -DRESIL_BUILD_BENCH=OFF -DRESIL_BUILD_EXAMPLES=OFF \
  -DRESIL_WITH_CURL=OFF -DRESIL_WITH_SERVER=OFF -DRESIL_WITH_SQLITE=OFF \
  -DRESIL_WITH_IDEM=OFF -DRESIL_WITH_REDIS=OFF -DRESIL_WITH_PG=OFF >/dev/null
cmake --build "$build" --target "${harnesses[@]}" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null

work="$(mktemp -d "${TMPDIR:-/tmp}/resil-fuzz.XXXXXX")"
keep=0
cleanup() { if [ "$keep" -eq 0 ]; then rm -rf "$work"; fi; }
trap cleanup EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
for i in "${!harnesses[@]}"; do
  name="${harnesses[$i]}"
  corpus="$work/$name/corpus"
  log="$work/$name/log"
  mkdir -p "$corpus"
  cp -R "$root/fuzz/corpus/${corpora[$i]}/." "$corpus/"

  rc=0
  # Run from the temporary directory so nothing lands in the caller's cwd.
  (cd "$work/$name" && "$build/fuzz/$name" -max_total_time="$duration" \
      -print_final_stats=1 -artifact_prefix="$work/$name/" "$corpus") \
      >"$log" 2>&1 || rc=$?

  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  if [ "$rc" -eq 0 ]; then
    echo "$name: ok, ${execs:-?} executions in ${duration}s"
  else
    status=1
    keep=1
    echo "$name: FAILED (exit $rc) after ${execs:-?} executions; log and reproducer in $work/$name/" >&2
    tail -n 40 "$log" >&2
  fi
done
exit "$status"
