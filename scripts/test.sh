#!/usr/bin/env bash
# Build resil and run every test (the README's test command).
#
#   scripts/test.sh            warnings as errors, all tests         (build/)
#   scripts/test.sh --asan     the same under ASan + UBSan            (build-asan/)
#   scripts/test.sh --tsan     the concurrent tests under TSan        (build-tsan/)
#
# Installs missing build dependencies first (see scripts/deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
jobs=$(nproc 2>/dev/null || echo 2)
args=(-DRESIL_WERROR=ON)
ctest_args=()
case "$mode" in
  "") dir=build ;;
  --asan) dir=build-asan; args+=(-DCMAKE_BUILD_TYPE=Debug -DRESIL_SANITIZE=address,undefined -DRESIL_BUILD_BENCH=OFF) ;;
  --tsan) dir=build-tsan; args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DRESIL_SANITIZE=thread -DRESIL_BUILD_BENCH=OFF)
          ctest_args+=(-L concurrent) ;;
  *) echo "test.sh: unknown option '$mode' (use --asan or --tsan)" >&2; exit 64 ;;
esac

scripts/deps.sh
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" -j"$jobs"
# halt_on_error keeps a sanitizer finding from scrolling past as a warning.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
ctest --test-dir "$dir" --output-on-failure -j"$jobs" "${ctest_args[@]}"
