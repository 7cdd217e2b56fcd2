#!/usr/bin/env bash
# chaos.sh - kill a durable parameter server again and again under load and
# check that nothing it acknowledged was lost or applied twice.
#
#   scripts/chaos.sh OT_BIN CHECK_BIN [KILLS]      (make chaos [CHAOS_KILLS=N])
#
# Starts `ot ps` over tcp://127.0.0.1 with a checkpoint directory, wal=on and
# wal_sync=every, and four `ot trainer` processes fed by `ot gen`, each
# syncing often and logging every delta frame the server acknowledged
# (--ack-log).  Then KILLS times (default 20): waits a random 0.2-1.5 s,
# kills the server with SIGKILL and restarts it from the same directory on
# the same port; the trainers keep their unacknowledged frame and resend it.
# At the end it stops the trainers (SIGTERM: a last sync), stops the server
# with --save, and runs CHECK_BIN (tests/chaos/chaos_check.c), which applies
# every acknowledged frame once to a fresh model and compares it with the
# saved master.  Exits 0 when nothing was lost or duplicated.
set -euo pipefail

OT=$(realpath "${1:?usage: chaos.sh OT_BIN CHECK_BIN [KILLS]}")
CHECK=$(realpath "${2:?usage: chaos.sh OT_BIN CHECK_BIN [KILLS]}")
KILLS=${3:-20}
TRAINERS=4
MODEL=(-b 16 -O optimizer=sgd)   # plain SGD: the ADD frames carry weights, which add up

dir=$(mktemp -d "${TMPDIR:-/tmp}/ot-chaos.XXXXXX")
ps_pid=""
pids=()

cleanup() {
    local p
    for p in $ps_pid "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ "${CHAOS_KEEP:-0}" = 1 ]; then
        echo "chaos: kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the first server binds a free port (port 0); its restarts reuse that port
url="tcp://127.0.0.1:0"
start=$(date +%s%N)

# waits until FILE holds PATTERN (up to 10 s)
wait_for() {
    local i
    for i in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "chaos: timed out waiting for '$2' in $1:" >&2
    cat "$1" >&2 || true
    return 1
}

starts=0
start_ps() {
    starts=$((starts + 1))
    "$OT" ps "${MODEL[@]}" --trainers "$url" --checkpoint "$dir/ckpt" \
        -O wal=on -O wal_sync=every -O checkpoint_interval_ms=300 \
        --save "$dir/master.bin" --stats-interval 500 >"$dir/ps.$starts.log" 2>&1 &
    ps_pid=$!
    wait_for "$dir/ps.$starts.log" ' ready$'
}

start_ps
url=$(sed -n 's/^ps .* trainers=\([^ ]*\) .*ready$/\1/p' "$dir/ps.1.log")
case "$url" in
tcp://127.0.0.1:[1-9]*) ;;
*) echo "chaos: no server URL in $dir/ps.1.log" >&2; exit 1 ;;
esac
for i in $(seq "$TRAINERS"); do
    mkfifo "$dir/data.$i"
    "$OT" gen -n 50000000 --seed "$i" --namespaces 8 --ids 20000 >"$dir/data.$i" 2>/dev/null &
    pids+=($!)
    "$OT" trainer "${MODEL[@]}" --ps "$url" -d "$dir/data.$i" --ack-log "$dir/acks.$i" \
        -O trainer_id="$i" -O sync_every_examples=200 -O sync_interval_ms=50 \
        -O timeout_ms=1000 -O sync_retries=2 --stats-interval 500 >"$dir/trainer.$i.log" 2>&1 &
    pids+=($!)
    trainer_pids[i]=$!
done
for i in $(seq "$TRAINERS"); do
    wait_for "$dir/trainer.$i.log" ' ready$'
done

for k in $(seq "$KILLS"); do
    sleep "$((RANDOM % 14 + 2))e-1"   # 0.2 .. 1.5 s
    kill -KILL "$ps_pid"
    wait "$ps_pid" 2>/dev/null || true
    start_ps
done
sleep 1   # let every trainer get one sync through the last server

for i in $(seq "$TRAINERS"); do
    if ! kill -0 "${trainer_pids[i]}" 2>/dev/null; then
        echo "chaos: trainer $i exited early:" >&2
        tail -n 5 "$dir/trainer.$i.log" >&2
        exit 1
    fi
    kill -TERM "${trainer_pids[i]}"
done
trc=0
for i in $(seq "$TRAINERS"); do
    wait "${trainer_pids[i]}" || { echo "chaos: trainer $i failed:" >&2; tail -n 5 "$dir/trainer.$i.log" >&2; trc=1; }
done
kill -TERM "$ps_pid"
wait "$ps_pid" || { echo "chaos: ot ps failed:" >&2; tail -n 5 "$dir/ps.$starts.log" >&2; exit 1; }
ps_pid=""
[ "$trc" = 0 ] || exit 1

version=$(sed -n 's/.* version=\([0-9]*\) stopped$/\1/p' "$dir/ps.$starts.log")
acks=()
for i in $(seq "$TRAINERS"); do
    [ -f "$dir/acks.$i" ] && acks+=("$dir/acks.$i")
done
"$CHECK" "${MODEL[@]}" --master "$dir/master.bin" --server-version "${version:-0}" \
    --kills "$KILLS" "${acks[@]}"
ms=$((($(date +%s%N) - start) / 1000000))
printf 'chaos run_s=%d.%d\n' $((ms / 1000)) $((ms % 1000 / 100))
