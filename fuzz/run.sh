#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for SECONDS (libFuzzer, coverage-guided).
#
#   fuzz/run.sh SECONDS [TARGET...]      (from the repository root; `make fuzz`, `make fuzz-short`)
#
# Each target starts from its seeds (fuzz/corpus/<target>/) and its past crashes
# (fuzz/regressions/<target>/); what it learns goes to fuzz/target/corpus/<target>/, outside git,
# so the next run continues from there. Prints the executions per target (libFuzzer's
# `Done N runs` line) and exits non-zero when any target crashed, naming the saved input.
set -uo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."

# libFuzzer settings, chosen for what we hunt: panics, overflows (debug assertions on), stack
# exhaustion, memory blow-ups and hangs.
#  -max_len        the token-service refuses bodies above 64 KiB (params::MAX_BODY_BYTES)
#  -rss_limit_mb   a parser that needs 2 GB for a 64 KiB input is a finding
#  -timeout        seconds for one input: a hang, not a slow input
LIBFUZZER_FLAGS=(-max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
# cargo fuzz needs nightly features (sanitizer coverage, #[thread_local]); RUSTC_BOOTSTRAP lets
# the stable toolchain provide them. No sanitizer: the code is safe Rust, and ASan doubles the
# build time. Debug assertions on, so integer overflow panics. 16 codegen units instead of
# cargo fuzz's 1: the cold build takes half the time (about 2.5 instead of 5 minutes on two
# cores) for about 5% fewer executions. A target dir of its own, so the instrumented build
# never invalidates the workspace's.
CARGO_FUZZ=(cargo fuzz build -s none --debug-assertions --codegen-units 16 --features libfuzzer
    --target-dir fuzz/target)
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release

echo "==> building the fuzz targets (cargo fuzz, libFuzzer; a cold build takes minutes)"
start=$(date +%s)
if ! RUSTC_BOOTSTRAP=1 "${CARGO_FUZZ[@]}"; then
    echo "fuzz: the build failed" >&2
    exit 1
fi
echo "    built in $(($(date +%s) - start)) s"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
summary=()
for target in "${targets[@]}"; do
    work=fuzz/target/corpus/$target
    artifacts=fuzz/artifacts/$target/
    mkdir -p "$work" "$artifacts"
    log=fuzz/target/logs/$target.log
    mkdir -p "$(dirname "$log")"
    dirs=("$work" "fuzz/corpus/$target")
    [ -d "fuzz/regressions/$target" ] && dirs+=("fuzz/regressions/$target")
    echo "==> fuzzing $target for $seconds s"
    "$bin_dir/$target" "${LIBFUZZER_FLAGS[@]}" -max_total_time="$seconds" \
        -artifact_prefix="$artifacts" "${dirs[@]}" >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)
    if [ $status -ne 0 ] || [ -z "$runs" ]; then
        failed+=("$target")
        echo "    CRASH (exit $status); the log's end ($log):"
        tail -n 25 "$log" | sed 's/^/    | /'
        saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
        if [ -n "$saved" ]; then
            echo "    the input: $saved"
            echo "    keep it as a regression test: cp $saved fuzz/regressions/$target/"
        else
            echo "    the process died before libFuzzer could save the input (a stack overflow"
            echo "    outside the service targets' budget check?); rerun with -runs and a smaller -max_len"
        fi
    else
        echo "    $runs"
    fi
    summary+=("$(printf '%-28s %s' "$target" "${runs:-crashed}")")
done

echo "==> executions per target"
printf '    %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]}" >&2
    exit 1
fi
