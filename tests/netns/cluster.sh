#!/bin/sh
# tests/netns/cluster.sh OT_BINARY
#
# Runs a sharded cluster as separate `ot` processes on separate network
# namespaces (docs/deployment.md) and checks that the predictors serve the
# union of the shards' masters after a final full update:
#   host 1 (10.200.11.1)  ot ps --shard 0/2
#   host 2 (10.200.11.2)  ot ps --shard 1/2
#   host 3 (10.200.11.3)  two ot trainer processes (half of the stream each)
#   host 4 (10.200.11.4)  two ot predictor processes serving on :7100, :7101
# The hosts are joined by veth pairs to a bridge in a fifth namespace; only
# these addresses are used.  Exit status: 0 pass, 77 skip (no iproute2, or
# namespaces not allowed here), anything else a failure.  Everything it
# creates is removed on exit.
set -u
OT=$1
case "$OT" in /*) ;; *) OT="$(pwd)/$OT" ;; esac
TAG="ot$$"
NS_BR="$TAG-br"
HOSTS="1 2 3 4"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-netns.XXXXXX") || exit 1
PIDS=""

cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null; done
    for h in $HOSTS; do ip netns del "$TAG-h$h" 2>/dev/null; done
    ip netns del "$NS_BR" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

skip() { echo "netns test skipped: $1"; exit 77; }

command -v ip >/dev/null 2>&1 || skip "iproute2 (ip) is not installed"
ip netns add "$NS_BR" 2>/dev/null || skip "cannot create network namespaces here (ip netns add failed)"
ip -n "$NS_BR" link add br0 type bridge || skip "cannot create a bridge"
ip -n "$NS_BR" link set br0 up
for h in $HOSTS; do
    ns="$TAG-h$h"
    ip netns add "$ns" || exit 1
    ip -n "$ns" link add eth0 type veth peer name "b$h" netns "$NS_BR" || skip "cannot create veth pairs"
    ip -n "$NS_BR" link set "b$h" master br0
    ip -n "$NS_BR" link set "b$h" up
    ip -n "$ns" addr add "10.200.11.$h/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
done

MODEL="-b 16 --optimizer adagrad"
PSOPT="-O rt_interval_ms=100 -O full_interval_ms=1000"
run() { # run HOST LOG CMD...
    h=$1; log=$2; shift 2
    ip netns exec "$TAG-h$h" "$@" >"$WORK/$log.out" 2>"$WORK/$log.err" &
    PIDS="$PIDS $!"
}

"$OT" gen -n 40000 --seed 7 -o "$WORK/all.vw" || exit 1
awk 'NR % 2 == 1' "$WORK/all.vw" >"$WORK/a.vw"
awk 'NR % 2 == 0' "$WORK/all.vw" >"$WORK/b.vw"
"$OT" gen -n 300 --seed 99 -o "$WORK/q.vw" || exit 1

T0="tcp://10.200.11.1:7000"; P0="tcp://10.200.11.1:7001"
T1="tcp://10.200.11.2:7000"; P1="tcp://10.200.11.2:7001"
run 1 ps0 "$OT" ps --shard 0/2 --trainers "$T0" --predictors "$P0" $MODEL $PSOPT --save "$WORK/m0.bin"
PS0=$!
run 2 ps1 "$OT" ps --shard 1/2 --trainers "$T1" --predictors "$P1" $MODEL $PSOPT --save "$WORK/m1.bin"
PS1=$!
run 4 pr0 "$OT" predictor --ps "$T0,$T1" --sub "$P0,$P1" --serve tcp://10.200.11.4:7100 $MODEL
PR0=$!
run 4 pr1 "$OT" predictor --ps "$T0,$T1" --sub "$P0,$P1" --serve tcp://10.200.11.4:7101 $MODEL
PR1=$!
run 3 tr1 "$OT" trainer --ps "$T0,$T1" -d "$WORK/a.vw" $MODEL -O trainer_id=1 -O sync_every_examples=500
TR1=$!
run 3 tr2 "$OT" trainer --ps "$T0,$T1" -d "$WORK/b.vw" $MODEL -O trainer_id=2 -O sync_every_examples=500
TR2=$!
# a third trainer and the second predictor are killed (-9) while the others
# run; the predictor is restarted and must catch up from both shards
run 3 tr3 sh -c "cat '$WORK/all.vw' - | '$OT' trainer --ps '$T0,$T1' $MODEL -O trainer_id=3 -O sync_every_examples=200"
TR3=$!
sleep 0.4
kill -KILL "$PR1" 2>/dev/null
pkill_children() { for c in $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p {print $1}'); do kill -KILL "$c" 2>/dev/null; done; }
pkill_children "$TR3"
kill -KILL "$TR3" 2>/dev/null
wait "$PR1" 2>/dev/null
run 4 pr1 "$OT" predictor --ps "$T0,$T1" --sub "$P0,$P1" --serve tcp://10.200.11.4:7101 $MODEL
PR1=$!
wait "$TR1"; r1=$?
wait "$TR2"; r2=$?
if [ $r1 -ne 0 ] || [ $r2 -ne 0 ]; then
    echo "trainer failed ($r1, $r2)"; cat "$WORK"/tr*.err "$WORK"/ps*.err; exit 1
fi
# the masters no longer change: after the next full update of each shard
# the predictors hold them
sleep 2.5
for port in 7100 7101; do
    ip netns exec "$TAG-h4" "$OT" predict --connect "tcp://10.200.11.4:$port" -d "$WORK/q.vw" \
        $MODEL >"$WORK/served$port.txt" 2>"$WORK/predict$port.err" || {
        echo "ot predict failed"; cat "$WORK/predict$port.err" "$WORK"/pr*.err; exit 1; }
done
kill -TERM "$PS0" "$PS1" "$PR0" "$PR1"
wait "$PS0" "$PS1" "$PR0" "$PR1"
[ -s "$WORK/m0.bin" ] && [ -s "$WORK/m1.bin" ] || { echo "no saved masters"; cat "$WORK"/ps*.err; exit 1; }
"$OT" predict --local "$WORK/m0.bin,$WORK/m1.bin" -d "$WORK/q.vw" $MODEL >"$WORK/union.txt" || exit 1
n=$(wc -l <"$WORK/union.txt")
[ "$n" -eq 300 ] || { echo "expected 300 scores, got $n"; exit 1; }
for port in 7100 7101; do
    if ! cmp -s "$WORK/union.txt" "$WORK/served$port.txt"; then
        echo "predictor :$port serves another model than the union of the shards' masters"
        diff "$WORK/union.txt" "$WORK/served$port.txt" | head -5
        cat "$WORK"/pr*.err
        exit 1
    fi
done
# different scores: a trained model, not a constant
[ "$(sort -u "$WORK/union.txt" | wc -l)" -gt 10 ] || { echo "scores are constant"; exit 1; }
echo "netns cluster: 2 shards, 2 trainers, 2 predictors: served == union of masters"
cat "$WORK"/ps0.err | tail -1
exit 0
