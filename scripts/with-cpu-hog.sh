#!/usr/bin/env bash
# Runs a command beside a CPU hog: one busy process per HOG_CPUS (default 1), as on a machine
# that is doing something else. `make test E2E_LOAD=1` runs the end-to-end suite this way; the
# suite must pass so (tests wait for conditions with deadlines, never for fixed times).
set -euo pipefail
hogs=()
stop_hogs() { for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap stop_hogs EXIT
trap 'exit 130' INT TERM HUP
for _ in $(seq 1 "${HOG_CPUS:-1}"); do
  # A subshell spinning at normal priority; it dies with this script (EXIT trap).
  ( trap - EXIT; while :; do :; done ) &
  hogs+=("$!")
done
echo "==> with a CPU hog on ${HOG_CPUS:-1} core(s) (pids ${hogs[*]})"
"$@"
