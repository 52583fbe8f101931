#!/usr/bin/env bash
# The project's test command: installs what the tests need (a prerequisite:
# when scripts/deps.sh fails nothing else runs), then runs every stage even
# when an earlier one failed: go vet, the unit, fuzz-seed, CLI end-to-end
# tests, the Xen runtime (QEMU) suite, the initramfs QEMU boot test and
# short fuzzing. It ends with a summary of each stage (PASS/FAIL, seconds)
# and, as its last line, "N passed, N failed"; it exits 1 when a stage
# failed.
set -u -o pipefail
cd "$(dirname "$0")/.."
if ! bash scripts/deps.sh; then
  echo "scripts/deps.sh failed: no stage run"
  echo "0 passed, 1 failed"
  exit 1
fi
mkdir -p .cache
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

# Each stage body is a function whose status is the stage's result; it runs
# in a subshell (no set -e: a failing command must not end the script).
vet() { go vet ./...; }

# Unit, table, golden and CLI end-to-end tests (fuzz targets run their seeds).
unit() { go test -count=1 ./...; }

# The runtime suite on a real Xen: builds the reference host image (packages
# cached under .cache/), boots it once under QEMU (TCG without KVM) and runs
# the Dom0, bundled-guest, import, bundle-package and vxn groups.
runtime_suite() {
  VXN_E2E=1 go test -count=1 -v -timeout 75m ./e2e 2>&1 | tee .cache/e2e-last.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|e2e: total|phase ' || true
  grep -qE '^ok[[:space:]]+github.com/vxn-dev/vxn/e2e' .cache/e2e-last.log || { echo "runtime suite failed: see .cache/e2e-last.log"; tail -50 .cache/e2e-last.log; return 1; }
}

# The vxn initramfs booted under plain QEMU (TCG) with the Debian kernel
# the runtime suite extracted under .cache/root (or $VXN_CACHE_DIR/root):
# containers' streams, exit codes, terminal, exec sessions and network.
# With VXN_E2E=1 a missing kernel or QEMU must fail, never skip: the test
# would skip, so both are checked here and any skip fails the stage.
initramfs_boot() {
  local cache=${VXN_CACHE_DIR:-.cache} log=.cache/initramfs-boot-last.log
  if ! compgen -G "$cache/root/linux-image-*/boot/vmlinuz-*" >/dev/null ||
     ! compgen -G "$cache/root/linux-image-*/lib/modules/*" >/dev/null; then
    echo "initramfs boot: no Debian kernel extracted under $cache/root/linux-image-* (the runtime suite downloads it)"
    return 1
  fi
  command -v qemu-system-x86_64 >/dev/null || { echo "initramfs boot: qemu-system-x86_64 is missing (Debian package qemu-system-x86)"; return 1; }
  VXN_E2E=1 go test -count=1 -timeout 30m -run TestBootQEMU -v ./pkg/initramfs 2>&1 | tee "$log" || return 1
  if grep -q -- '--- SKIP' "$log"; then
    echo "initramfs boot: TestBootQEMU skipped with VXN_E2E=1:"; grep -B2 -- '--- SKIP' "$log"
    return 1
  fi
  grep -q '^--- PASS: TestBootQEMU' "$log" || { echo "initramfs boot: TestBootQEMU did not pass: see $log"; return 1; }
}

# Short fuzzing of every parser of untrusted input.
fuzz() { bash scripts/fuzz.sh "${FUZZTIME:-10s}"; }

names=() results=() secs=()
# stage NAME FUNC: runs one stage and records its result and duration.
stage() {
  local t0=$SECONDS r=PASS
  echo "=== stage: $1"
  ( "$2" ) || r=FAIL
  names+=("$1") results+=("$r") secs+=($((SECONDS - t0)))
  echo "=== stage: $1: $r ($((SECONDS - t0)) s)"
}

stage "go vet" vet
stage "unit tests" unit
stage "runtime suite" runtime_suite
stage "initramfs boot" initramfs_boot
stage "fuzzing" fuzz

pass=0 fail=0
echo "=== summary"
for i in "${!names[@]}"; do
  printf '%-4s  %-16s %6d s\n' "${results[$i]}" "${names[$i]}" "${secs[$i]}"
  if [ "${results[$i]}" = PASS ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
