#!/usr/bin/env bash
# Bounded fuzz run of every target (docs/fuzzing.md): SECONDS_PER_TARGET each (default 60), one
# target at a time, corpus kept in fuzz/corpus/<target>, seeds read from fuzz/seeds/<target>,
# dictionary fuzz/dicts/<target>.dict when there is one.
# Exits non-zero as soon as a target finds a crash (the input is in fuzz/artifacts/<target>/).
#
# Stable toolchain: libFuzzer needs -Zsanitizer, which stable rustc only accepts with
# RUSTC_BOOTSTRAP=1 (set below). Needs cargo-fuzz: `cargo install cargo-fuzz --locked`.
#
# Usage: fuzz/run-short.sh [target...]    e.g. SECONDS_PER_TARGET=600 fuzz/run-short.sh planner
set -euo pipefail

cd "$(dirname "$0")"
seconds="${SECONDS_PER_TARGET:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(config_parse bunq_response planner)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    inputs=("corpus/$target")
    # The planner target builds its inputs with `arbitrary` and has no seed files.
    if [ -d "seeds/$target" ]; then
        inputs+=("seeds/$target")
    fi
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=("-dict=dicts/$target.dict")
    fi
    echo "== $target: ${seconds}s"
    # -a: debug assertions and overflow checks on. -rss_limit_mb bounds memory on a shared box;
    # -timeout flags inputs that take over 10 s (a hang is a finding too).
    cargo fuzz run -a "$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}"
done
