#!/bin/sh
# Times qemu-img convert -O raw against the pure-Go converter in
# pkg/disk/qcow2 on ~1 GiB virtual images (plain, deflate, zstd, backing
# file with zero clusters, v2, extended L2) and prints ours/qemu-img ratios,
# byte-identity and allocated sizes. Needs qemu-img and qemu-io.
#
# Usage: bench/qcow2/run.sh [image-cache-dir]
set -eu
cd "$(dirname "$0")/../.."
if [ $# -gt 0 ]; then
	export VXN_BENCH_DIR="$1"
fi
VXN_BENCH=1 exec go test -count=1 -timeout 30m ./pkg/disk/qcow2 -run '^TestBenchmarkVsQemuImg$' -v
