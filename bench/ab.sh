#!/usr/bin/env bash
# bench/ab.sh — alternating A/B runs of `ecertd process` on the claims benchmark.
#
# Usage (after `bash bench/run.sh --only claims` has built the claims store):
#
#   bash bench/ab.sh RUNS BINARY_A BINARY_B [BINARY ...]
#
# Each round runs every binary once, in the order given, on a fresh copy of the
# claims store (BENCH_DATA/full/claims-c1000000.db) with the claims file
# (BENCH_DATA/full/ae-claims/ae-0001.txt), synchronous=FULL, business date
# 2026-03-15, and times it with /usr/bin/time. Alternating puts every binary in
# the same moments of a noisy machine. Prints per binary the median wall time,
# the median CPU time (user + system), the median peak RSS and every wall time;
# fails if two binaries answer with different bytes.
#
# Copy the binaries out of target/ first (`cp target/release/ecertd /tmp/a`), so
# that a build between them cannot swap one.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${BENCH_DATA:-$REPO/bench/data}/full
SNAP=$DATA/claims-c1000000.db
INPUT=$DATA/ae-claims/ae-0001.txt
[[ $# -ge 3 ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ -f $SNAP && -f $INPUT ]] || { echo "bench/ab.sh: no claims store in $DATA (run bench/run.sh --only claims)" >&2; exit 1; }
RUNS=$1
shift
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
unset ECERTD_ROOT ECERTD_DB ECERTD_CONFIG
export ECERTD_BUSINESS_DATE=2026-03-15

declare -A WALL CPU RSS
want=""
for _ in $(seq "$RUNS"); do
    for bin in "$@"; do
        cp "$SNAP" "$WORK/w.db"
        rm -f "$WORK/w.db-wal" "$WORK/w.db-shm"
        sync
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$bin" --db "$WORK/w.db" process "$INPUT" --channel abi \
            > "$WORK/out.resp"
        read -r e u s m < "$WORK/time"
        WALL[$bin]+="$e "
        CPU[$bin]+="$(awk "BEGIN { print $u + $s }") "
        RSS[$bin]+="$m "
        got=$(md5sum < "$WORK/out.resp")
        [[ -z $want ]] && want=$got
        [[ $got == "$want" ]] || { echo "bench/ab.sh: $bin answered differently" >&2; exit 1; }
    done
done
median() { tr ' ' '\n' <<< "$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for bin in "$@"; do
    printf '%s: wall %s s, CPU %s s, peak RSS %s KiB (medians of %s); walls: %s\n' "$bin" \
        "$(median "${WALL[$bin]}")" "$(median "${CPU[$bin]}")" "$(median "${RSS[$bin]}")" "$RUNS" "${WALL[$bin]}"
done
