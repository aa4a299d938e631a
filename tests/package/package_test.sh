#!/bin/sh
# package_test.sh BUILD_DIR CONSUMER_DIR CXX: installs BUILD_DIR into a temporary prefix, configures
# and builds the consumer project against that prefix alone, checks that find_package found the
# installed copy (not this build tree), and runs the consumer. The prefix is removed afterwards.
set -eu
build=$1 consumer=$2 cxx=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/vt_package.XXXXXX")
trap 'rm -rf "$work"' EXIT
run() {  # a step's output is shown only when it fails
  "$@" > "$work/step.log" 2>&1 || { cat "$work/step.log"; echo "package_test: failed: $*" >&2; exit 1; }
}
run cmake --install "$build" --prefix "$work/prefix"
run cmake -S "$consumer" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
grep -q "^vt_DIR:PATH=$work/prefix/lib/cmake/vt\$" "$work/build/CMakeCache.txt" ||
  { grep vt_DIR "$work/build/CMakeCache.txt"; echo "package_test: vt was not found in the installed prefix" >&2; exit 1; }
run cmake --build "$work/build" -j2
"$work/build/vt_consumer"
