#!/usr/bin/env bash
# demo.sh - what `make demo` runs: online training with the three roles, in
# one process, on a drifting click stream.
#
#  1. `ot cluster` runs a parameter server, 4 trainers (one thread each) and
#     2 predictors over inproc://, fed by the built-in generator: a click
#     stream whose hidden logistic model drifts (a fraction of its weights
#     is re-drawn every 1000 examples).  The trainers share the stream
#     round-robin; before each example is learned a predictor scores it.
#     The server sends the predictors real-time updates every 100 ms and a
#     full update every 10 s.  Its table shows, as it goes: the trainers'
#     loss and the served loss, the updates sent, the bytes they cost against
#     a full update every 100 ms, and how far the predictors lag the master.
#  2. The same stream again, quietly, with predictors that get a full update
#     every second and nothing in between (--full-only).
#  3. One line compares the two.
#
# usage: scripts/demo.sh PATH_TO_OT
# Environment: OT_DEMO_EXAMPLES (default 400000), OT_DEMO_DRIFT (default
# 0.005), OT_DEMO_SECONDS (default 12: each run stops reading the stream
# after this long, so the demo ends even on a slow machine).
set -euo pipefail

ot=${1:?usage: scripts/demo.sh PATH_TO_OT}
n=${OT_DEMO_EXAMPLES:-400000}
drift=${OT_DEMO_DRIFT:-0.005}
seconds=${OT_DEMO_SECONDS:-12}

if [[ ! -x "$ot" ]]; then
    echo "demo: $ot is not an executable (build it with make)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ot-demo.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

common=(-n 4 -m 2 --examples "$n" --namespaces 20 --ids 2000 --drift "$drift" --seed 42
        -b 20 --seconds "$seconds")

echo "== ot cluster: 4 trainers, 2 predictors, real-time updates every 100 ms, full every 10 s"
"$ot" cluster "${common[@]}" | tee "$tmp/rt.log"
echo
echo "== the same stream; the predictors get a full update every second, nothing in between"
"$ot" cluster "${common[@]}" --full-only --full-ms 1000 -q | tee "$tmp/full.log"

# "served loss X", "X MB to each predictor", ... from a summary line.
field() { sed -n "s|^cluster: [0-9]* examples in .*$2.*|\\1|p" "$1" | tail -n 1; }
rt_served=$(field "$tmp/rt.log" 'served loss \([0-9.]*\)')
rt_train=$(field "$tmp/rt.log" 'trainer loss \([0-9.]*\)')
rt_mb=$(field "$tmp/rt.log" ' \([0-9.]*\) MB to each predictor')
full_served=$(field "$tmp/full.log" 'served loss \([0-9.]*\)')
full_mb=$(field "$tmp/full.log" ' \([0-9.]*\) MB to each predictor')
stale=$(field "$tmp/rt.log" 'staleness mean \([0-9]* ms\)')
if [[ -z "$rt_served" || -z "$rt_mb" || -z "$full_served" || -z "$full_mb" ]]; then
    echo "demo: ot cluster printed no summary" >&2
    exit 1
fi

echo
echo "demo: on a drifting stream, what the predictors served scored a log loss of $rt_served" \
     "with real-time updates ($rt_mb MB sent to each predictor, served model on average" \
     "$stale behind the master) against $full_served with a full update every second" \
     "($full_mb MB); the trainers' own progressive loss was $rt_train."
