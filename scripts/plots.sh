#!/usr/bin/env bash
# plots.sh - what `make plots` runs: `ot cluster` on generated drifting click
# streams, then gnuplot charts (PNG) into an output directory (docs/img).
# docs/tuning.md explains the charts.
#
#  1. The same stream three times, with each run's time series (--csv) and
#     freshness samples (--freshness-csv):
#       rt      real-time updates every 100 ms (threshold 1e-4), a full
#               update every 10 s: the library's defaults;
#       full1s  full updates only, every second;
#       full10s full updates only, every 10 s (the rt run without its
#               real-time updates).
#     Charts: served_loss.png (served loss over time, the three runs and the
#     trainers' own loss), bytes_per_minute.png (bytes each predictor
#     receives per minute, rt against full-only, with what a full update at
#     every real-time interval would cost), freshness.png (histogram of the
#     served model's staleness, rt against full1s).
#  2. Short sweeps, one option at a time around the defaults, each point one
#     run: rt_threshold, rt_interval_ms, full_interval_ms and
#     sync_every_examples.  Chart: tuning.png (served loss above the
#     trainers' loss, and megabytes per minute to each predictor, for each
#     value).  A sweep run is shorter than a full interval, so its megabytes
#     per minute are the real-time bytes it measured plus one full copy per
#     full_interval_ms (the steady state), not the bytes it happened to send.
#     The numbers go to plots-summary.txt in the output directory.
#
# Every run reads the stream for a fixed time (the examples it gets through
# depend on the machine), so the script takes about two minutes.
#
# usage: scripts/plots.sh PATH_TO_OT OUTPUT_DIR
# Environment: GNUPLOT (default gnuplot); OT_PLOTS_SECONDS (default 12, each
# main run), OT_PLOTS_SWEEP_SECONDS (default 3, each sweep point);
# OT_PLOTS_KEEP=1 (keep the CSV files, in OUTPUT_DIR/data).
set -euo pipefail

ot=${1:?usage: scripts/plots.sh PATH_TO_OT OUTPUT_DIR}
out=${2:?usage: scripts/plots.sh PATH_TO_OT OUTPUT_DIR}
gnuplot=${GNUPLOT:-gnuplot}
seconds=${OT_PLOTS_SECONDS:-12}
sweep_seconds=${OT_PLOTS_SWEEP_SECONDS:-3}

if [[ ! -x "$ot" ]]; then
    echo "plots: $ot is not an executable (build it with make)" >&2
    exit 2
fi
if ! command -v "$gnuplot" >/dev/null 2>&1; then
    echo "plots: $gnuplot not found (make plots-deps installs gnuplot-nox)" >&2
    exit 2
fi
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ot-plots.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT

# Cairo's PNG terminal draws antialiased text; the plain one is the fallback.
if "$gnuplot" -e 'set terminal pngcairo' </dev/null >/dev/null 2>&1; then
    term="pngcairo font 'sans,10'"
else
    term="png"
fi

# The stream: 20 namespaces of 2000 ids, 0.5% of the hidden weights re-drawn
# every 1000 examples; 2^20 weights; 4 trainers and 2 predictors.
common=(-n 4 -m 2 --examples 100000000 --namespaces 20 --ids 2000 --drift 0.005 --seed 42 -b 20)

run() { # NAME FLAGS...: one main run with its time series
    local name=$1
    shift
    echo "plots: ot cluster ${common[*]} --seconds $seconds $*"
    "$ot" cluster "${common[@]}" --seconds "$seconds" --csv "$tmp/$name.csv" --csv-ms 500 \
        --freshness-csv "$tmp/$name.fresh.csv" -q "$@" | tee "$tmp/$name.log"
}

run rt
run full1s --full-only --full-ms 1000
run full10s --full-only --full-ms 10000

# ---- sweeps -----------------------------------------------------------------------
# A summary line's figures: examples, seconds, trainer loss, served loss,
# MB to each predictor, mean staleness (ms), deltas sent by the trainers (MB).
summary_fields() {
    sed -n 's|^cluster: \([0-9]*\) examples in \([0-9.]*\) s .*trainer loss \([0-9.]*\), served loss \([0-9.]*\) .*, \([0-9.]*\) MB to each predictor .*staleness mean \([0-9]*\) ms.*|\1 \2 \3 \4 \5 \6|p' "$1" |
        tail -n 1
}

# The size of one full copy in MB, from the header lines.
full_copy_mb() {
    sed -n 's|.*fullonly_MB: a full update (\([0-9.]*\) MB).*|\1|p' "$1" | head -n 1
}

# Real-time bytes per second between the first and the last row of a --csv file.
rt_rate() {
    awk -F, 'NR == 2 { t0 = $1; b0 = $7 } NR > 2 { t1 = $1; b1 = $7 }
             END { print (t1 > t0 ? (b1 - b0) / (t1 - t0) : 0) }' "$1"
}

sweep() { # OPTION VALUE...: one run per value, a line each in sweep_OPTION.dat
    local opt=$1 v f full rate fullms
    shift
    echo "# $opt examples seconds trainer_loss served_loss mb_per_predictor stale_ms gap_pct mb_per_min" \
        >"$tmp/sweep_$opt.dat"
    for v in "$@"; do
        echo "plots: sweep $opt=$v"
        "$ot" cluster "${common[@]}" --seconds "$sweep_seconds" -O "$opt=$v" \
            --csv "$tmp/sweep.csv" --csv-ms 250 >"$tmp/sweep.log"
        f=$(summary_fields "$tmp/sweep.log")
        full=$(full_copy_mb "$tmp/sweep.log")
        if [[ -z "$f" || -z "$full" ]]; then
            echo "plots: no summary from ot cluster -O $opt=$v:" >&2
            cat "$tmp/sweep.log" >&2
            exit 1
        fi
        rate=$(rt_rate "$tmp/sweep.csv")
        fullms=10000
        [[ "$opt" == full_interval_ms ]] && fullms=$v
        echo "$v $f $rate $full $fullms" |
            awk '{ gap = $4 > 0 ? 100 * ($5 - $4) / $4 : 0;
                   mbm = 60 * $8 / 1e6 + $9 * 60000 / $10;
                   printf "%s %s %s %s %s %s %s %.3f %.1f\n", $1, $2, $3, $4, $5, $6, $7, gap, mbm }' \
            >>"$tmp/sweep_$opt.dat"
    done
}

sweep rt_threshold 1e-4 1e-3 1e-2 1e-1 3e-1
sweep rt_interval_ms 25 100 400 1000
sweep full_interval_ms 1000 3000 10000
sweep sync_every_examples 50 250 1000 5000

# ---- charts ------------------------------------------------------------------------
echo "plots: gnuplot into $out"
"$gnuplot" <<EOF
set datafile separator ","
set terminal $term size 900,520
set key top right
set grid

set output "$out/served_loss.png"
set terminal $term size 900,760
set multiplot layout 2,1 title "Served log loss over time on a drifting stream (0.5% of hidden weights re-drawn per 1000 examples)"
unset title
set xlabel "seconds since the server started"
set ylabel "log loss over the last 0.5 s"
plot "$tmp/full10s.csv" using 1:4 skip 1 with lines lw 2 lc 1 title "served: full updates every 10 s only", \
     "$tmp/full1s.csv" using 1:4 skip 1 with lines lw 2 lc 2 title "served: full updates every 1 s only", \
     "$tmp/rt.csv" using 1:4 skip 1 with lines lw 2 lc 3 title "served: real-time every 100 ms + full every 10 s", \
     "$tmp/rt.csv" using 1:3 skip 1 with lines dt 2 lw 1 lc rgb "black" title "trainers' own progressive loss (rt run)"
set ylabel "served minus trainers' loss"
set key top left
plot "$tmp/full10s.csv" using 1:(\$4 - \$3) skip 1 with lines lw 2 lc 1 title "full every 10 s only", \
     "$tmp/full1s.csv" using 1:(\$4 - \$3) skip 1 with lines lw 2 lc 2 title "full every 1 s only", \
     "$tmp/rt.csv" using 1:(\$4 - \$3) skip 1 with lines lw 2 lc 3 title "real-time + full every 10 s"
unset multiplot
set terminal $term size 900,520
set key top right

set output "$out/bytes_per_minute.png"
set title "Bytes sent to each predictor, per minute"
set ylabel "MB per minute (log scale)"
set logscale y
set key bottom right
# Rate between consecutive rows: (bytes now - bytes before) / (t now - t before).
prev_t = 0; prev_b = 0
rate(t, b) = (r = (t > prev_t && prev_t > 0) ? 60e-6 * (b - prev_b) / (t - prev_t) : 1/0, prev_t = t, prev_b = b, r)
mean(t, b) = (t > 0 ? 60e-6 * b / t : 1/0)
plot "$tmp/rt.csv" using 1:(mean(\$1, \$9)) skip 1 with lines lw 2 dt 3 lc rgb "gray40" title "full copy every 100 ms (the rt run's freshness, full updates only)", \
     "$tmp/full1s.csv" using 1:(mean(\$1, \$7 + \$8)) skip 1 with lines lw 2 title "full updates every 1 s only (mean since start)", \
     "$tmp/rt.csv" using 1:(mean(\$1, \$7 + \$8)) skip 1 with lines lw 2 title "real-time + full every 10 s (mean since start)", \
     "$tmp/rt.csv" using 1:(rate(\$1, \$7)) skip 1 with linespoints pt 7 ps 0.4 lw 1 title "real-time updates alone, per 0.5 s interval"
unset logscale y

set output "$out/freshness.png"
set title "Staleness of the served model, sampled every 10 ms"
set xlabel "staleness: how long ago the master moved past the oldest served version (ms)"
set ylabel "fraction of samples"
set key top right
set style fill solid 0.5 border -1
set boxwidth 0.9 relative
binw = 20
bin(x) = binw * floor(x / binw) + binw / 2
stats "$tmp/rt.fresh.csv" using 3 skip 1 nooutput
nrt = STATS_records
stats "$tmp/full1s.fresh.csv" using 3 skip 1 nooutput
nfull = STATS_records
plot "$tmp/full1s.fresh.csv" using (bin(\$3)):(1.0 / nfull) skip 1 smooth frequency with boxes title "full updates every 1 s only", \
     "$tmp/rt.fresh.csv" using (bin(\$3)):(1.0 / nrt) skip 1 smooth frequency with boxes title "real-time every 100 ms"

set datafile separator whitespace
set output "$out/tuning.png"
set terminal $term size 900,520
unset title
set multiplot layout 2,4 title "One option at a time around the defaults: served loss above the trainers' (%, top); MB per minute to each predictor (bottom)"
set logscale x
set offsets graph 0.08, graph 0.08, 0, 0
set key off
set style data linespoints
set ylabel "served - trainer loss (%)"
set xlabel "rt_threshold" noenhanced
set format x "%.0e"
set xtics 100
plot "$tmp/sweep_rt_threshold.dat" using 1:8 pt 7 lw 2
set ylabel ""
set xlabel "rt_interval_ms" noenhanced
set format x "%g"
set xtics autofreq
plot "$tmp/sweep_rt_interval_ms.dat" using 1:8 pt 7 lw 2
set xlabel "full_interval_ms" noenhanced
plot "$tmp/sweep_full_interval_ms.dat" using 1:8 pt 7 lw 2
set xlabel "sync_every_examples" noenhanced
plot "$tmp/sweep_sync_every_examples.dat" using 1:8 pt 7 lw 2
set logscale y
set ylabel "MB/min to each predictor"
set xlabel "rt_threshold" noenhanced
set format x "%.0e"
set xtics 100
plot "$tmp/sweep_rt_threshold.dat" using 1:9 pt 7 lw 2 lc 2
set ylabel ""
set xlabel "rt_interval_ms" noenhanced
set format x "%g"
set xtics autofreq
plot "$tmp/sweep_rt_interval_ms.dat" using 1:9 pt 7 lw 2 lc 2
set xlabel "full_interval_ms" noenhanced
plot "$tmp/sweep_full_interval_ms.dat" using 1:9 pt 7 lw 2 lc 2
set xlabel "sync_every_examples" noenhanced
plot "$tmp/sweep_sync_every_examples.dat" using 1:9 pt 7 lw 2 lc 2
unset multiplot
EOF

# ---- the numbers -------------------------------------------------------------------
{
    echo "# plots-summary.txt: the figures behind docs/img/*.png, written by scripts/plots.sh"
    echo "# ($(nproc 2>/dev/null || echo '?') CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'))"
    echo
    for r in rt full1s full10s; do
        echo "== $r"
        grep '^cluster: [0-9]* examples in' "$tmp/$r.log"
        echo
    done
    for f in "$tmp"/sweep_*.dat; do
        echo "== $(basename "$f" .dat)"
        column -t "$f" 2>/dev/null || cat "$f"
        echo
    done
} >"$out/plots-summary.txt"

if [[ "${OT_PLOTS_KEEP:-0}" == 1 ]]; then
    mkdir -p "$out/data"
    cp "$tmp"/*.csv "$tmp"/*.dat "$out/data/"
fi
echo "plots: wrote $out/served_loss.png $out/bytes_per_minute.png $out/freshness.png" \
     "$out/tuning.png $out/plots-summary.txt"
