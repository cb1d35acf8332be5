#!/usr/bin/env bash
# Packaging test: install resil into a temporary prefix, then build the
# examples against the *installed* package twice, with find_package(resil) and
# with pkg-config, and run them. If the installed headers, libraries, CMake
# package or resil.pc rot, this fails.
#
#   install_test.sh BUILD_DIR SOURCE_DIR C_COMPILER
set -euo pipefail
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/resil/resil.h include/resil/retry.h share/man/man1/resil.1; do
  [ -f "$prefix/$f" ] || { echo "install_test: missing $f" >&2; exit 1; }
done
libdir=$(dirname "$(find "$prefix" -name 'libresil.so' | head -n1)")
[ -n "$libdir" ] && [ -f "$libdir/libresil.a" ] || { echo "install_test: libraries missing" >&2; exit 1; }
[ -f "$libdir/cmake/resil/resilConfig.cmake" ] || { echo "install_test: CMake package missing" >&2; exit 1; }
[ -f "$libdir/pkgconfig/resil.pc" ] || { echo "install_test: resil.pc missing" >&2; exit 1; }

# The public API only: the examples must not see resil's source tree.
echo "== find_package(resil)"
cmake -S "$src/examples" -B "$tmp/ex" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/ex" >/dev/null
"$tmp/ex/retry_basic"

echo "== pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion resil)" != "" ]
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "$src/examples/retry_basic.c" -o "$tmp/pc_example" \
  $(pkg-config --cflags --libs resil) -Wl,-rpath,"$libdir"
"$tmp/pc_example"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "$src/examples/retry_basic.c" -o "$tmp/pc_static" \
  $(pkg-config --cflags resil) "$libdir/libresil.a" -pthread
"$tmp/pc_static"

if [ -x "$prefix/bin/resil" ]; then
  "$prefix/bin/resil" --version
fi
echo "install_test: ok"
