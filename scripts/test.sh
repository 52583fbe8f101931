#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs the
# unit, fuzz-seed, CLI end-to-end and Xen runtime (QEMU) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
go vet ./...
# Unit, table, golden and CLI end-to-end tests (fuzz targets run their seeds).
go test -count=1 ./...
# Short fuzzing of every parser of untrusted input.
bash scripts/fuzz.sh "${FUZZTIME:-10s}"
