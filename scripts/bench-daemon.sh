#!/usr/bin/env bash
# Release binary size and idle memory of the daemon, printed (nothing is asserted).
#
#   scripts/bench-daemon.sh            # build --release, measure, print
#   IDLE_SECS=60 scripts/bench-daemon.sh
#
# Three measurements, all on loopback only:
#   1. size of target/release/bunq-ipsync, as built and after `strip` (on a temporary copy);
#   2. `bunq-ipsync demo --follow`: the real daemon against the simulator embedded in the SAME
#      process (so its RSS includes the simulator and its seeded account);
#   3. the daemon alone: `bunq-ipsync run` against a simulator hosted by a separate helper process
#      (examples/sim_server.rs; 5 credentials x 20 IPs, interval 10s).
# For 2 and 3, VmRSS/VmHWM are sampled from /proc/PID/status every SAMPLE_SECS seconds for
# IDLE_SECS seconds once the first reconcile run has finished, then the process is stopped.
set -euo pipefail

IDLE_SECS=${IDLE_SECS:-30}
SAMPLE_SECS=${SAMPLE_SECS:-5}
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

kib() { awk -v k="$1" 'BEGIN { printf "%d KiB (%.1f MiB)", k, k / 1024 }'; }
# cpu_ticks PID: user + system CPU time so far, in clock ticks (fields 14 and 15 of stat).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# wait_for FILE PATTERN SECONDS: until a line of FILE matches, or fail.
wait_for() {
    local deadline=$((SECONDS + $3))
    until grep -qE "$2" "$1" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "timed out waiting for /$2/ in $1:" >&2
            tail -20 "$1" >&2
            exit 1
        fi
        sleep 0.5
    done
}

# sample NAME PID: IDLE_SECS of VmRSS/VmHWM samples, then summary lines (RSS, CPU time used).
sample() {
    local name=$1 pid=$2 rss hwm min=0 max=0 n=0 sum=0 threads
    echo "  $name (pid $pid): sampling every ${SAMPLE_SECS}s for ${IDLE_SECS}s"
    local end=$((SECONDS + IDLE_SECS)) ticks0
    ticks0=$(cpu_ticks "$pid")
    while ((SECONDS < end)); do
        sleep "$SAMPLE_SECS"
        rss=$(status_kib "$pid" VmRSS)
        hwm=$(status_kib "$pid" VmHWM)
        threads=$(status_kib "$pid" Threads)
        echo "    t+$((IDLE_SECS - (end - SECONDS)))s VmRSS $(kib "$rss")  VmHWM $(kib "$hwm")  threads $threads"
        ((n += 1, sum += rss))
        if ((min == 0 || rss < min)); then min=$rss; fi
        if ((rss > max)); then max=$rss; fi
    done
    echo "  => $name idle VmRSS min $(kib "$min"), mean $(kib $((sum / n))), max $(kib "$max"); VmHWM $(kib "$hwm")"
    awk -v n="$name" -v t=$(($(cpu_ticks "$pid") - ticks0)) -v hz="$(getconf CLK_TCK)" -v s="$IDLE_SECS" \
        'BEGIN { printf "  => %s CPU time over the %d s: %.2f s (%.1f millicores on average)\n", n, s, t / hz, 1000 * t / hz / s }'
}

echo "== machine"
echo "  nproc: $(nproc); $(free -h | awk '/^Mem:/ { print "memory total " $2 ", available " $7 }')"
echo "  $(uname -srm); $(rustc --version)"

# Two invocations: built together, the example's dev-dependencies would unify features into the
# daemon binary (e.g. tokio's test-util) and change what is measured.
echo "== build: cargo build --release --locked --bin bunq-ipsync; cargo build --release --locked --example sim_server"
cargo build --release --locked --quiet --bin bunq-ipsync
cargo build --release --locked --quiet --example sim_server
BIN=$ROOT/target/release/bunq-ipsync
SIM=$ROOT/target/release/examples/sim_server

echo "== 1. release binary size"
size=$(stat -c %s "$BIN")
cp "$BIN" "$WORK/bunq-ipsync.stripped"
strip "$WORK/bunq-ipsync.stripped"
stripped=$(stat -c %s "$WORK/bunq-ipsync.stripped")
awk -v b="$size" 'BEGIN { printf "  as built (Cargo.toml [profile.release]): %d bytes (%.2f MiB)\n", b, b / 1048576 }'
awk -v b="$stripped" 'BEGIN { printf "  after `strip` on a copy:                 %d bytes (%.2f MiB)\n", b, b / 1048576 }'

echo "== 2. bunq-ipsync demo --follow (daemon + embedded simulator in one process)"
# --log-level info: without it the demo keeps logging at warn, also for the daemon it follows with,
# and the daemon's per-run lines would not show.
"$BIN" --log-level info demo --follow >"$WORK/demo.log" 2>&1 &
DEMO=$!
PIDS+=("$DEMO")
wait_for "$WORK/demo.log" '== 5\.' 120
# The daemon's first run (at start) logs a line with its trigger and duration.
wait_for "$WORK/demo.log" 'trigger=' 120
sample "demo --follow" "$DEMO"
kill -TERM "$DEMO"
wait "$DEMO" || true
echo "  stopped with SIGTERM; $(grep -c 'trigger=' "$WORK/demo.log" || true) daemon run(s) logged; 429s logged: $(grep -c 'HTTP 429' "$WORK/demo.log" || true)"

echo "== 3. the daemon alone: bunq-ipsync run against examples/sim_server in another process"
"$SIM" "$WORK/sim" 10s >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIMPID=$!
PIDS+=("$SIMPID")
wait_for "$WORK/sim.out" 'config.yaml' 60
CONFIG=$(head -1 "$WORK/sim.out")
"$BIN" run --config "$CONFIG" >"$WORK/run.log" 2>&1 &
RUN=$!
PIDS+=("$RUN")
wait_for "$WORK/run.log" 'trigger=' 120
sample "bunq-ipsync run" "$RUN"
echo "  simulator helper (pid $SIMPID), for reference: VmRSS $(kib "$(status_kib "$SIMPID" VmRSS)")"
echo "  reconcile runs logged: $(grep -c 'trigger=' "$WORK/run.log" || true); 429s logged: $(grep -c 'HTTP 429' "$WORK/run.log" || true)"
grep 'trigger=' "$WORK/run.log" | sed 's/^/    /' | head -10
kill -TERM "$RUN"
wait "$RUN" || true
echo "  stopped with SIGTERM: $(tail -1 "$WORK/run.log")"
