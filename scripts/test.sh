#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs the
# unit, fuzz-seed, CLI end-to-end and Xen runtime (QEMU) tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
mkdir -p .cache
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
go vet ./...
# Unit, table, golden and CLI end-to-end tests (fuzz targets run their seeds).
go test -count=1 ./...
# The runtime suite on a real Xen: builds the reference host image (packages
# cached under .cache/), boots it once under QEMU (TCG without KVM) and runs
# the Dom0, bundled-guest, import, bundle-package and vxn groups.
VXN_E2E=1 go test -count=1 -v -timeout 75m ./e2e 2>&1 | tee .cache/e2e-last.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|e2e: total|phase ' || true
grep -qE '^ok[[:space:]]+github.com/vxn-dev/vxn/e2e' .cache/e2e-last.log || { echo "runtime suite failed: see .cache/e2e-last.log"; tail -50 .cache/e2e-last.log; exit 1; }
# Short fuzzing of every parser of untrusted input.
bash scripts/fuzz.sh "${FUZZTIME:-10s}"
