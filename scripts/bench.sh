#!/usr/bin/env bash
# Benchmarks against the reference tools in the same run; prints ratios.
# Not part of the tests: timings are noisy on shared machines.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export VXN_BENCH=1
go test -count=1 -run 'TestBenchmarkVsMkfs' -v ./pkg/disk/ext4 | grep -E '^(BENCH|---|ok|FAIL)|ratio' || true
go test -count=1 -run 'TestBenchmarkVsQemuImg' -v ./pkg/disk/qcow2 | grep -v '^=== ' || true
go test -count=1 -run 'TestBenchmarkRebuild' -v ./pkg/xenbundle | grep -E '^(BENCH|---|ok|FAIL)|ratio' || true
go test -count=1 -run '^$' -bench 'BenchmarkParseVsXL' ./pkg/xlcfg | grep -E 'Benchmark|ratio' || true
