#!/usr/bin/env bash
# bench/run.sh — the performance harness of ecertd.
#
# Usage (from a clean clone, after `cargo build --release`):
#
#   bash bench/run.sh --quick          small sizes, < 3 minutes on the 2-core machine
#   bash bench/run.sh                  the full sizes (the 10M-certificate query store
#                                      takes ~20 minutes to build the first time; it is kept)
#   bash bench/run.sh --only parse,claims,memory    run some figures only
#
# Figures (printed as a Markdown table: figure, value, baseline, ratio, target, command):
#
#   parse    `ecertd check` on an AE file of ~1 GiB (quick: 64 MiB), MB/s (10^6 bytes)
#            of the hyperfine median, next to `wc -l` on the same file as the floor.
#   claims   `ecertd process` of an AE file (full: 100,000 entry summaries, ~555,000
#            claims; quick: 5,000) against a store of 1,000,000 certificates (quick:
#            100,000) built through the pipeline from `ecertd-gen gt` files; claims per
#            second = accepted claims (lines `E1 IC00` of the response) / hyperfine
#            median, synchronous=FULL. Baseline in the same run: benches/claims_baseline.rs,
#            "the obvious approach" (per claim SELECT, UPDATE, INSERT; COMMIT every 1,000
#            claims) on a copy of the same store, same file, with its own balance and
#            usage tables (added to the snapshot once, untimed: `claims_baseline --prepare`),
#            run twice: on ecertd's store as it is (16 KiB pages) and on a copy rebuilt on
#            SQLite's default 4 KiB pages (`--page-size 4096`), where it is faster; the
#            ratio is taken against the faster of the two.
#            The store is restored from a snapshot before every run (hyperfine --prepare,
#            then `sync`).
#            Also in the same run: `process` with `lookahead = false` (one thread), whose
#            responses must be byte-identical; and benches/claims_floor.rs, the store's own
#            statements for the same file timed alone (read, write, commit; median of
#            $BENCH_RUNS runs), as one thread, as two threads (read beside write + commit),
#            with events appended unordered, and with the whole file in one transaction: how
#            fast any program on this store could be.
#            And the same file renamed into inbound/abi/ of a running `ecertd serve` on a copy
#            of the store (its max_file_bytes raised for it), rename → response, median of
#            $BENCH_RUNS runs, its response byte-identical to process's.
#   latency  `ecertd serve` on a copy of the claims store; benches/drop_latency.rs drops
#            one-entry AE files one at a time into inbound/abi/ (`.name`, then rename)
#            at 100 per second, open loop, and times rename → response in
#            outbound/ABC/ (inotify): p50, p99. "daemon not available" when
#            `ecertd --help` lists no `serve`.
#   queries  benches/query_latency.rs: EC "I" queries for IORs holding 1,000
#            certificates, in process (Engine + Session, one C1 batch per iteration,
#            no start-up or password hashing; the store file read into the page
#            cache first, as in a running daemon), against a store of 10,000,000
#            certificates and 50,000,000 usage events (quick: 100,000 and 500,000)
#            bulk-loaded by `ecertd-gen load` (Store::load_synthetic): p50, p99.
#   memory   peak RSS (`/usr/bin/time -f %M`) of `ecertd check` and `ecertd process` on
#            the parse file (full ~1 GiB; quick 64 MiB), and on the claims file as the
#            second size (its RSS is the "baseline" column: ratio ≈ 1 means
#            independent of input size).
#   profile  `perf record --call-graph dwarf` of one claims run; reports in the results.
#
# Determinism: every generated file comes from ecertd-gen with fixed seeds and the
# business date 2026-03-15; query and drop programs use fixed seeds.
#
# Where things go:
#   BENCH_DATA     generated data, stores, perf.data   (default: bench/data/, gitignored;
#                  about 0.3 GiB for --quick, 10 GiB for the full mode)
#   BENCH_RESULTS  raw outputs + table.md              (default: bench/results/<mode>-<UTC time>/)
#   BENCH_RUNS     hyperfine runs per command          (default: 5 parse / 3 claims; quick 3 / 2)
#
# Needs: cargo, hyperfine (installed with apt-get if missing), /usr/bin/time,
# perf (profile only; skipped if missing). Nothing here talks to the network
# except that apt-get.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=full
ONLY=parse,claims,latency,queries,memory,profile
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) MODE=quick ;;
        --only) ONLY=$2; shift ;;
        --only=*) ONLY=${1#--only=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ---- sizes -------------------------------------------------------------------
PER_IOR=1000
if [[ $MODE == quick ]]; then
    PARSE_BYTES=$((64 << 20))
    CLAIM_CERTS=100000
    CLAIM_ENTRIES=5000
    PARSE_RUNS=${BENCH_RUNS:-3}
    CLAIM_RUNS=${BENCH_RUNS:-2}
    LAT_FILES=300
    Q_CERTS=100000
    Q_EVENTS=500000
    Q_QUERIES=50
    PERF_FREQ=499
else
    PARSE_BYTES=$((1 << 30))
    CLAIM_CERTS=1000000
    CLAIM_ENTRIES=100000
    PARSE_RUNS=${BENCH_RUNS:-5}
    CLAIM_RUNS=${BENCH_RUNS:-3}
    LAT_FILES=3000
    Q_CERTS=10000000
    Q_EVENTS=50000000
    Q_QUERIES=200
    PERF_FREQ=199
fi
LAT_RATE=100
DATE=2026-03-15

DATA=${BENCH_DATA:-$REPO/bench/data}/$MODE
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=${BENCH_RESULTS:-$REPO/bench/results/$MODE-$STAMP}
mkdir -p "$DATA" "$RES"
DATA=$(cd "$DATA" && pwd)
RES=$(cd "$RES" && pwd)
WORK=$DATA/work
mkdir -p "$WORK"

# No configuration or store of the caller's leaks in.
unset ECERTD_ROOT ECERTD_DB ECERTD_CONFIG
export ECERTD_BUSINESS_DATE=$DATE
cd "$WORK"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- tools -------------------------------------------------------------------
if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine"
    (apt-get update -qq && apt-get install -y -qq hyperfine) >&2
fi

log "building (cargo build --release; cargo bench --no-run)"
(cd "$REPO" && cargo build --release --bins >&2)
bench_exe() {
    (cd "$REPO" && cargo bench --no-run --bench "$1" --message-format=json 2>/dev/null) |
        grep -o "\"executable\":\"[^\"]*/$1-[0-9a-f]*\"" | tail -1 | sed 's/.*":"//; s/"$//'
}
# Private copies: a `cargo build` in the same tree during the run cannot swap them.
BIN=$WORK/bin
rm -rf "$BIN" && mkdir -p "$BIN"
for b in ecertd ecertd-gen; do cp "$REPO/target/release/$b" "$BIN/$b"; done
for b in claims_baseline claims_floor drop_latency query_latency; do
    exe=$(bench_exe "$b")
    [[ -x $exe ]] || { echo "bench/run.sh: could not build benches/$b.rs (cargo bench --no-run)" >&2; exit 1; }
    cp "$exe" "$BIN/$b"
done
ECERTD=$BIN/ecertd
GEN=$BIN/ecertd-gen
BASELINE=$BIN/claims_baseline
FLOOR=$BIN/claims_floor
DROP=$BIN/drop_latency
QUERY=$BIN/query_latency

# Schema fingerprint: a kept store is rebuilt when the migrations or the
# page size of new stores change.
SCHEMA=$({
    sed -n '/^const MIGRATIONS/,/^\];/p' "$REPO/src/store.rs"
    grep '^pub const NEW_STORE_PAGE_SIZE' "$REPO/src/store.rs"
} | sha256sum | cut -c1-16)

{
    echo "mode: $MODE   started: $STAMP"
    echo "git: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null) ($(cd "$REPO" && git status --short 2>/dev/null | wc -l) changed paths)"
    echo "schema fingerprint: $SCHEMA"
    echo "host: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "rustc: $(rustc --version 2>/dev/null)   hyperfine: $(hyperfine --version)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$RES/env.txt"

# ---- helpers -----------------------------------------------------------------
ROWS=()
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | \`$6\` |"); }
# hf JSON KEY [INDEX]: a statistic of the INDEX-th command (0-based) of a hyperfine export.
hf() {
    grep "\"$2\":" "$1" | sed -n "$((${3:-0} + 1))p" | sed 's/.*: *//; s/,$//'
}
# kv FILE KEY: the value of KEY=value in a one-line "k=v k=v" report.
kv() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -1; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# median FILE KEY: the median of KEY over the "k=v k=v" lines of FILE.
median() {
    local v
    mapfile -t v < <(while read -r line; do kv <(echo "$line") "$2"; done < "$1" | sort -g)
    echo "${v[$(((${#v[@]} - 1) / 2))]}"
}
fsize() { stat -c %s "$1"; }
snapshot_restore() { # SNAPSHOT TARGET
    cp "$1" "$2"
    rm -f "$2-wal" "$2-shm"
    sync
}

# ---- data --------------------------------------------------------------------
log "generating workload files in $DATA"
POP=(--seed 1 --certificates "$CLAIM_CERTS" --per-ior "$PER_IOR")
"$GEN" --out "$DATA/gt" "${POP[@]}" gt > "$RES/gen-gt.txt"
"$GEN" --out "$DATA/ae-claims" "${POP[@]}" --tag CLM ae --entries "$CLAIM_ENTRIES" > "$RES/gen-ae-claims.txt"
if want parse || want memory; then
    "$GEN" --out "$DATA/ae-big" "${POP[@]}" --tag BIG ae --bytes "$PARSE_BYTES" > "$RES/gen-ae-big.txt"
fi
CLAIMS_AE=$DATA/ae-claims/ae-0001.txt
BIG_AE=$DATA/ae-big/ae-0001.txt

# The claims store: certificates through the pipeline (GT files, channel ecert).
SNAP=$DATA/claims-c$CLAIM_CERTS.db
SNAP4K=$DATA/claims-c$CLAIM_CERTS-p4096.db
if want claims || want latency || want memory || want profile; then
    log "building the claims store ($CLAIM_CERTS certificates through ecertd process)"
    rm -rf "$WORK/snap-root" "$SNAP" "$SNAP-wal" "$SNAP-shm"
    "$ECERTD" --root "$WORK/snap-root" init > /dev/null
    for c in AU NZ UY AR; do
        "$ECERTD" --root "$WORK/snap-root" sender add --id "${c}1" --kind country --country "$c" --password "PW${c}01" > /dev/null
    done
    "$ECERTD" --root "$WORK/snap-root" sender add --id ABC --kind broker --password PWABC1 > /dev/null
    for c in AU NZ UY AR; do
        "$ECERTD" --root "$WORK/snap-root" process "$DATA/gt/gt-$c.txt" --channel ecert > "$WORK/gt-$c.resp"
    done
    accepted=$(cat "$WORK"/gt-*.resp | grep -c 'CERTIFICATE ACCEPTED' || true)
    echo "certificates accepted through the pipeline: $accepted of $CLAIM_CERTS" > "$RES/claims-store.txt"
    [[ $accepted -eq $CLAIM_CERTS ]] || { cat "$RES/claims-store.txt" >&2; exit 1; }
    [[ ! -e $WORK/snap-root/ecertd.db-wal ]] || echo "warning: WAL left after process" >> "$RES/claims-store.txt"
    mv "$WORK/snap-root/ecertd.db" "$SNAP"
    rm -f "$WORK/snap-root/ecertd.db-wal" "$WORK/snap-root/ecertd.db-shm"
    # The baseline's own balance and usage tables (ecertd ignores them).
    "$BASELINE" --db "$SNAP" --prepare
    # The same store on SQLite's default 4 KiB pages, where the obvious
    # approach is faster than on ecertd's 16 KiB: the baseline runs on both
    # and the claims ratio is taken against the faster.
    cp "$SNAP" "$SNAP4K"
    "$BASELINE" --db "$SNAP4K" --prepare --page-size 4096
fi

# ---- a. parse ----------------------------------------------------------------
if want parse; then
    log "parse: ecertd check vs wc -l on $(fsize "$BIG_AE") bytes"
    set +e
    "$ECERTD" check "$BIG_AE" > "$RES/parse-check-diagnostics.txt"
    rc=$?
    set -e
    echo "exit $rc, $(wc -l < "$RES/parse-check-diagnostics.txt") diagnostics" >> "$RES/parse-check-diagnostics.txt"
    hyperfine --style basic -i --warmup 1 --runs "$PARSE_RUNS" \
        --export-json "$RES/parse.json" --export-markdown "$RES/parse.md" \
        -n check "$ECERTD check $BIG_AE" -n wc "wc -l $BIG_AE" > "$RES/parse.txt" 2>&1
    size=$(fsize "$BIG_AE")
    chk=$(calc %.0f "$size / $(hf "$RES/parse.json" median 0) / 1e6")
    wcl=$(calc %.0f "$size / $(hf "$RES/parse.json" median 1) / 1e6")
    row "parse: \`ecertd check\`, $(calc %.2f "$size / 1073741824") GiB AE" "$chk MB/s" "$wcl MB/s (\`wc -l\`)" \
        "$(calc %.2f "$chk / $wcl")" "≥ 500 MB/s" "ecertd check $BIG_AE"
fi

# ---- b. claims ---------------------------------------------------------------
if want claims; then
    log "claims: ecertd process vs baseline, $CLAIM_RUNS runs each"
    W=$WORK/claims.db
    W4K=$WORK/claims-p4096.db
    hyperfine --style basic --runs "$CLAIM_RUNS" \
        --prepare "cp $SNAP $W && cp $SNAP4K $W4K && rm -f $W-wal $W-shm $W4K-wal $W4K-shm && sync" \
        --export-json "$RES/claims.json" --export-markdown "$RES/claims.md" \
        -n ecertd "$ECERTD --db $W process $CLAIMS_AE --channel abi > $WORK/claims.resp" \
        -n baseline "$BASELINE --db $W --input $CLAIMS_AE > $RES/claims-baseline-last.txt" \
        -n one-thread "ECERTD_LOOKAHEAD=false $ECERTD --db $W process $CLAIMS_AE --channel abi > $WORK/claims-one.resp" \
        -n baseline-4k "$BASELINE --db $W4K --input $CLAIMS_AE > $RES/claims-baseline-4k-last.txt" \
        > "$RES/claims.txt" 2>&1
    cmp -s "$WORK/claims.resp" "$WORK/claims-one.resp" ||
        { echo "bench/run.sh: process answered differently without the look-ahead" >&2; exit 1; }
    ours=$(grep -c '^E1 IC00' "$WORK/claims.resp" || true)
    base=$(kv "$RES/claims-baseline-last.txt" claims_accepted)
    t_ours=$(hf "$RES/claims.json" median 0)
    t_base16=$(hf "$RES/claims.json" median 1)
    t_base4=$(hf "$RES/claims.json" median 3)
    base4=$(kv "$RES/claims-baseline-4k-last.txt" claims_accepted)
    [[ $base4 -eq $base ]] || { echo "bench/run.sh: the baseline accepted $base4 claims on 4 KiB pages, $base on 16" >&2; exit 1; }
    # The ratio is taken against the faster baseline.
    if awk "BEGIN { exit !($t_base4 <= $t_base16) }"; then t_base=$t_base4 pages=4; else t_base=$t_base16 pages=16; fi
    {
        echo "accepted claims: ecertd $ours, baseline $base"
        echo "ecertd: median $t_ours s, user $(hf "$RES/claims.json" user 0) s, system $(hf "$RES/claims.json" system 0) s (means)"
        echo "baseline on ecertd's store (16 KiB pages): median $t_base16 s, user $(hf "$RES/claims.json" user 1) s, system $(hf "$RES/claims.json" system 1) s (means)"
        echo "baseline on 4 KiB pages: median $t_base4 s, user $(hf "$RES/claims.json" user 3) s, system $(hf "$RES/claims.json" system 3) s (means)"
        echo "ratios taken against the baseline on $pages KiB pages"
        echo "one-thread (lookahead=false): median $(hf "$RES/claims.json" median 2) s, user $(hf "$RES/claims.json" user 2) s, system $(hf "$RES/claims.json" system 2) s (means)"
        echo "response batches: $(grep -c '^A' "$WORK/claims.resp" || true), entries accepted: $(grep -c '^E1A' "$WORK/claims.resp" || true)"
    } > "$RES/claims-counts.txt"
    r_ours=$(calc %.0f "$ours / $t_ours")
    r_base=$(calc %.0f "$base / $t_base")
    row "claims: \`ecertd process\`, $ours claims, $CLAIM_CERTS certificates, sync=FULL" "$r_ours claims/s" \
        "$r_base claims/s (obvious approach, the faster of $(calc %.0f "$base / $t_base4") on 4 KiB pages and $(calc %.0f "$base / $t_base16") on 16)" \
        "$(calc %.2f "$r_ours / $r_base")" "≥ 250,000/s and ≥ 8×" \
        "ecertd --db claims.db process $CLAIMS_AE --channel abi"
    r_one=$(calc %.0f "$ours / $(hf "$RES/claims.json" median 2)")
    row "claims, one thread (\`lookahead = false\`)" "$r_one claims/s" "$r_base claims/s (obvious approach)" \
        "$(calc %.2f "$r_one / $r_base")" "–" "ECERTD_LOOKAHEAD=false ecertd --db claims.db process ..."

    # The floor: the store's own statements for the same file, timed alone.
    log "claims: the store's floor (benches/claims_floor.rs), $CLAIM_RUNS runs each"
    : > "$RES/claims-floor.txt"
    : > "$RES/claims-floor-unordered.txt"
    : > "$RES/claims-floor-one-transaction.txt"
    for _ in $(seq "$CLAIM_RUNS"); do
        snapshot_restore "$SNAP" "$W"
        "$FLOOR" --db "$W" --input "$CLAIMS_AE" >> "$RES/claims-floor.txt"
        snapshot_restore "$SNAP" "$W"
        "$FLOOR" --db "$W" --input "$CLAIMS_AE" --unordered-events >> "$RES/claims-floor-unordered.txt"
        snapshot_restore "$SNAP" "$W"
        "$FLOOR" --db "$W" --input "$CLAIMS_AE" --group-records 1000000000 >> "$RES/claims-floor-one-transaction.txt"
    done
    floor_accepted=$(kv "$RES/claims-floor.txt" claims_accepted)
    [[ $floor_accepted -eq $ours ]] ||
        echo "note: the floor accepted $floor_accepted claims, ecertd $ours" >> "$RES/claims-counts.txt"
    floor=$RES/claims-floor.txt
    f_one=$(median "$floor" claims_per_s)
    f_two=$(median "$floor" two_threads_claims_per_s)
    u_two=$(median "$RES/claims-floor-unordered.txt" two_threads_claims_per_s)
    row "claims floor: the store's statements alone, one thread (read $(median "$floor" read_s) s, write $(median "$floor" write_s) s, commit $(median "$floor" commit_s) s)" \
        "$f_one claims/s" "$r_ours claims/s (ecertd)" "$(calc %.2f "$r_ours / $f_one")" "–" \
        "claims_floor --db claims.db --input $CLAIMS_AE"
    row "claims floor, two threads (read beside write + commit)" "$f_two claims/s" "$r_ours claims/s (ecertd)" \
        "$(calc %.2f "$r_ours / $f_two")" "–" "claims_floor (two_threads_claims_per_s)"
    row "claims floor, two threads, events unordered (no usable ledger)" "$u_two claims/s" \
        "$r_ours claims/s (ecertd)" "$(calc %.2f "$r_ours / $u_two")" "–" "claims_floor --unordered-events"
    one=$RES/claims-floor-one-transaction.txt
    row "claims floor, the whole file in one transaction (read $(median "$one" read_s) s, write $(median "$one" write_s) s, commit $(median "$one" commit_s) s)" \
        "$(median "$one" claims_per_s) claims/s, two threads $(median "$one" two_threads_claims_per_s)" \
        "$r_ours claims/s (ecertd)" "$(calc %.2f "$r_ours / $(median "$one" two_threads_claims_per_s)")" "–" \
        "claims_floor --group-records 1000000000"

    # The same file through the daemon: dropped into `ecertd serve` on a copy
    # of the store, rename → response (the daemon's maximum file size raised
    # for it), with `process` above as its baseline.
    if "$ECERTD" --help 2>/dev/null | grep -qE '^ +serve( |$)'; then
        log "claims: the same file through ecertd serve, $CLAIM_RUNS runs"
        : > "$RES/claims-daemon.txt"
        D=$WORK/claims-daemon-root
        for _ in $(seq "$CLAIM_RUNS"); do
            rm -rf "$D"
            "$ECERTD" --root "$D" init > /dev/null
            snapshot_restore "$SNAP" "$D/ecertd.db"
            ECERTD_MAX_FILE_BYTES=$(($(fsize "$CLAIMS_AE") + 1)) "$ECERTD" --root "$D" serve \
                > "$WORK/claims-daemon.log" 2>&1 &
            DPID=$!
            waited=0
            until grep -q "ecertd serving" "$WORK/claims-daemon.log"; do
                sleep 0.05
                waited=$((waited + 1))
                ((waited < 600)) || { echo "bench/run.sh: the daemon did not start" >&2; kill "$DPID"; exit 1; }
            done
            cp "$CLAIMS_AE" "$D/inbound/abi/.claims.txt"
            sync
            t0=$(date +%s%N)
            mv "$D/inbound/abi/.claims.txt" "$D/inbound/abi/claims.txt"
            until compgen -G "$D/outbound/ABC/*.resp" > /dev/null; do
                sleep 0.01
                (($(date +%s%N) - t0 < 600000000000)) || { echo "bench/run.sh: no daemon response" >&2; kill "$DPID"; exit 1; }
            done
            t1=$(date +%s%N)
            kill -TERM "$DPID"
            wait "$DPID" || true
            cmp -s "$D"/outbound/ABC/*.resp "$WORK/claims.resp" ||
                { echo "bench/run.sh: the daemon answered differently from process" >&2; exit 1; }
            echo "seconds=$(calc %.3f "($t1 - $t0) / 1e9")" >> "$RES/claims-daemon.txt"
        done
        t_d=$(median "$RES/claims-daemon.txt" seconds)
        row "claims through the daemon: the same file renamed into \`inbound/abi\` of \`ecertd serve\`, rename → response" \
            "$(calc %.0f "$ours / $t_d") claims/s ($t_d s)" "$r_ours claims/s (\`ecertd process\`)" \
            "$(calc %.2f "$t_ours / $t_d")" "–" "ecertd serve (max_file_bytes raised); mv FILE inbound/abi/"
    fi
fi

# ---- c. latency --------------------------------------------------------------
if want latency; then
    if "$ECERTD" --help 2>/dev/null | grep -qE '^ +serve( |$)'; then
        log "latency: $LAT_FILES files at $LAT_RATE/s into ecertd serve"
        L=$WORK/latency-root
        rm -rf "$L"
        "$ECERTD" --root "$L" init > /dev/null
        snapshot_restore "$SNAP" "$L/ecertd.db"
        "$ECERTD" --root "$L" serve > "$WORK/latency-daemon.log" 2>&1 &
        DPID=$!
        set +e
        "$DROP" --root "$L" --certificates "$CLAIM_CERTS" --per-ior "$PER_IOR" --count "$LAT_FILES" \
            --rate "$LAT_RATE" --samples "$RES/latency-samples.txt" > "$RES/latency.txt" 2>&1
        rc=$?
        kill -TERM "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
        set -e
        { # the daemon's log, shortened
            echo "$(wc -l < "$WORK/latency-daemon.log") lines; first and last 15:"
            head -n 15 "$WORK/latency-daemon.log"
            echo "..."
            tail -n 15 "$WORK/latency-daemon.log"
        } > "$RES/latency-daemon.log"
        if [[ $rc -eq 0 ]]; then
            p50=$(kv "$RES/latency.txt" p50_ms)
            p99=$(kv "$RES/latency.txt" p99_ms)
            miss=$(kv "$RES/latency.txt" missing)
            served=$(kv "$RES/latency.txt" served_per_s)
            idle=$(kv "$RES/latency.txt" idle_p50_ms)
            row "latency p50: file drop → response, $LAT_FILES files at $LAT_RATE/s (served $served/s)" "$p50 ms" \
                "$idle ms (one file at a time)" "$(calc %.1f "$p50 / $idle")" "–" \
                "drop_latency --count $LAT_FILES --rate $LAT_RATE (ecertd serve)"
            row "latency p99 ($miss of $LAT_FILES missing)" "$p99 ms" "–" "–" "< 50 ms" \
                "drop_latency --count $LAT_FILES --rate $LAT_RATE (ecertd serve)"
        else
            row "latency" "failed (see latency.txt)" "–" "–" "< 50 ms" "drop_latency"
        fi
    else
        echo "daemon not available: ecertd --help lists no serve" > "$RES/latency.txt"
        row "latency" "daemon not available" "–" "–" "< 50 ms" "ecertd serve"
    fi
fi

# ---- d. queries --------------------------------------------------------------
if want queries; then
    Q=$DATA/query-c$Q_CERTS-p$PER_IOR-e$Q_EVENTS.db
    if [[ ! -f $Q || "$(cat "$Q.schema" 2>/dev/null)" != "$SCHEMA" ]]; then
        log "queries: loading $Q_CERTS certificates and $Q_EVENTS usage events (ecertd-gen load)"
        rm -f "$Q" "$Q-wal" "$Q-shm" "$Q.part" "$Q.part-wal" "$Q.part-shm"
        "$GEN" --seed 1 --certificates "$Q_CERTS" --per-ior "$PER_IOR" load --db "$Q.part" \
            --usage-events "$Q_EVENTS" --senders --business-date "$DATE" > "$RES/queries-load.txt" 2>&1
        mv "$Q.part" "$Q"
        rm -f "$Q.part-wal" "$Q.part-shm"
        echo "$SCHEMA" > "$Q.schema"
    else
        echo "kept store $Q (schema $SCHEMA)" > "$RES/queries-load.txt"
    fi
    # The figure is the steady state of a running daemon: the store in the
    # page cache (other figures' files may have pushed it out).
    log "queries: reading $Q into the page cache"
    cat "$Q" > /dev/null
    log "queries: $Q_QUERIES EC queries in process"
    "$QUERY" --db "$Q" --certificates "$Q_CERTS" --per-ior "$PER_IOR" --queries "$Q_QUERIES" \
        --business-date "$DATE" --samples "$RES/queries-samples.txt" > "$RES/queries.txt" 2>&1
    p50=$(kv "$RES/queries.txt" p50_ms)
    p99=$(kv "$RES/queries.txt" p99_ms)
    recs=$(kv "$RES/queries.txt" records_per_answer)
    row "queries p50: EC for an IOR of $PER_IOR certificates ($recs records), $Q_CERTS certificates, $Q_EVENTS usage events" \
        "$p50 ms" "–" "–" "–" "query_latency --queries $Q_QUERIES"
    row "queries p99" "$p99 ms" "–" "–" "< 20 ms" "query_latency --queries $Q_QUERIES"
fi

# ---- e. memory ---------------------------------------------------------------
if want memory; then
    log "memory: peak RSS of check and process"
    rss() { # OUT CMD...: peak RSS in MiB (also keeps "%M KiB %e s %U user %S sys")
        local out=$1; shift
        /usr/bin/time -f '%M KiB peak RSS, %e s elapsed, %U s user, %S s system' -o "$out" "$@" > /dev/null || true
        awk '/peak RSS/ { printf "%.1f", $1 / 1024 }' "$out"
    }
    big=$(calc %.2f "$(fsize "$BIG_AE") / 1048576")
    small=$(calc %.1f "$(fsize "$CLAIMS_AE") / 1048576")
    c_big=$(rss "$RES/memory-check-big.txt" "$ECERTD" check "$BIG_AE")
    c_small=$(rss "$RES/memory-check-small.txt" "$ECERTD" check "$CLAIMS_AE")
    row "memory: \`ecertd check\`, $big MiB input (baseline: $small MiB input)" "$c_big MiB" "$c_small MiB" \
        "$(calc %.2f "$c_big / $c_small")" "< 256 MiB" "/usr/bin/time -f %M ecertd check FILE"
    snapshot_restore "$SNAP" "$WORK/memory.db"
    p_big=$(rss "$RES/memory-process-big.txt" "$ECERTD" --db "$WORK/memory.db" process "$BIG_AE" --channel abi)
    snapshot_restore "$SNAP" "$WORK/memory.db"
    p_small=$(rss "$RES/memory-process-small.txt" "$ECERTD" --db "$WORK/memory.db" process "$CLAIMS_AE" --channel abi)
    note=""
    [[ $MODE == quick ]] && note=" (quick mode: 64 MiB, not 1 GiB)"
    row "memory: \`ecertd process\`, $big MiB input$note (baseline: $small MiB input)" "$p_big MiB" "$p_small MiB" \
        "$(calc %.2f "$p_big / $p_small")" "< 256 MiB" "/usr/bin/time -f %M ecertd process FILE --channel abi"
fi

# ---- profile -----------------------------------------------------------------
if want profile; then
    if command -v perf >/dev/null && perf record -o "$WORK/perf-probe.data" -- true > /dev/null 2>&1; then
        log "profile: perf record of one claims run"
        snapshot_restore "$SNAP" "$WORK/profile.db"
        perf record -F "$PERF_FREQ" --call-graph dwarf,16384 -o "$WORK/perf.data" -- \
            "$ECERTD" --db "$WORK/profile.db" process "$CLAIMS_AE" --channel abi > /dev/null 2> "$RES/profile-record.txt"
        perf report -i "$WORK/perf.data" --stdio --no-children --sort dso -g none --percent-limit 0.5 \
            > "$RES/profile-dso.txt" 2>/dev/null
        perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.4 \
            > "$RES/profile-self.txt" 2>/dev/null
        perf report -i "$WORK/perf.data" --stdio --children --sort symbol -g none --percent-limit 2 \
            > "$RES/profile-children.txt" 2>/dev/null
        perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol -g caller,2,callee --percent-limit 3 \
            > "$RES/profile-callers.txt" 2>/dev/null
        rm -f "$WORK/perf-probe.data"
    else
        echo "perf not available" > "$RES/profile-self.txt"
    fi
fi

# ---- table -------------------------------------------------------------------
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RES/env.txt"
{
    echo "## ecertd benchmarks ($MODE, $STAMP)"
    echo
    echo "| figure | value | baseline | ratio | target | command |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    sed 's/^/    /' "$RES/env.txt"
} | tee "$RES/table.md"
log "raw outputs in $RES"
