#!/usr/bin/env bash
# bench/herd.sh — the thundering herd at scale: N simultaneous cgets of one cold key.
#
#   bash bench/herd.sh > herd.json            (bench/all.sh runs it with the others)
#
# Needs: curl, jq. Knobs: ROUNDS=3 HERD_SIZES="1000 5000 10000" HERD_DELAY=300ms
#        QUIET_WAIT=120; GCLAB=path to skip the build.
#
# A dbserver whose reads wait HERD_DELAY and three frontends. Each herd is
# `gclab cli herd --requests N --json`: it writes a fresh key, fires N cgets of it at once,
# round-robin over the frontends, and reports the dbserver's own read counter (after −
# before: it must be 1) and the latency of each cget, from just before it leaves the cli
# (so opening its TCP connection is included) to the end of its answer. Sizes are
# interleaved across rounds (1000, 5000, 10000, 1000, ...).

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    "## Thundering herd",
    "",
    "`gclab cli herd --requests N --json` against a dbserver with `--delay \(.settings.delay)` and three frontends: each herd writes a fresh key and fires N cgets of it at once, round-robin over the frontends. Database reads: the dbserver’s own counter, after − before. Latency: from just before a cget leaves the cli (its TCP connect included) to the end of its answer. \(.settings.rounds | count("round")), medians; reads and failures are of every round.",
    "",
    "| cgets at once | database reads | failed | p50 | p99 | max | seconds |",
    "|---|---|---|---|---|---|---|",
    (.sizes[] | "| \(.requests) | \(.db_reads | join(" · ")) | \(.failed) | \(.p50_ms) ms | \(.p99_ms) ms | \(.max_ms) ms | \(.seconds) |"),
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

begin

HERD_SIZES=${HERD_SIZES:-1000 5000 10000}
HERD_DELAY=${HERD_DELAY:-300ms}
DB=127.0.0.1:18082
PEERS=18021,18022,18023
FRONTENDS=19021,19022,19023
ports_free 18082 18021 18022 18023 19021 19022 19023

# Every cget is a TCP connection, on the cli's side and a frontend's: 10,000 at once need
# that many file descriptors (the frontend raises its own limit; the cli may not).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

say "a dbserver on $DB (reads wait $HERD_DELAY) and frontends $FRONTENDS"
start_dbserver "$DB" "$HERD_DELAY"
pids=()
for port in ${PEERS//,/ }; do
    start_frontend "$port" "$PEERS" "$DB"
    pids+=("$((port + 1000)):$LAST_PID")
done
for pid in "${pids[@]}"; do wait_for "http://127.0.0.1:${pid%:*}/stats" "${pid#*:}"; done

for ((round = 1; round <= ROUNDS; round++)); do
    for n in $HERD_SIZES; do
        wait_for_quiet
        out=$WORK/herd-$n-$round.json
        # Its exit code says "some failed"; the report counts them, and is checked below.
        timeout 300 "$GCLAB" cli herd --requests "$n" --frontends "$FRONTENDS" --db "$DB" --json >"$out" || true
        jq -e .db_reads "$out" >/dev/null 2>&1 || die "herd of $n failed: $(head -c 2000 "$out")"
        jq -c --argjson round "$round" '{requests, round: $round, db_reads, errors, wrong_values, not_found,
            failed: (.errors + .wrong_values + .not_found), first_error, latency_ms, seconds}' "$out" >>"$WORK/runs.jsonl"
        tail -n1 "$WORK/runs.jsonl" | jq -r '"round \(.round), herd of \(.requests): \(.db_reads) database read(s) · failed \(.failed) · p50 \(.latency_ms.p50) ms · p99 \(.latency_ms.p99) ms"' >&2
    done
done

jqm -s --argjson rounds "$ROUNDS" --arg delay "$HERD_DELAY" 'include "lib";
    {name: "herd",
     settings: {rounds: $rounds, delay: $delay},
     sizes: (group_by(.requests) | map({
        requests: .[0].requests,
        db_reads: map(.db_reads), failed: (map(.failed) | add),
        p50_ms: (map(.latency_ms.p50) | median), p99_ms: (map(.latency_ms.p99) | median),
        max_ms: (map(.latency_ms.max) | median), seconds: (map(.seconds) | median | round(3)),
        rounds: map(del(.requests))}))}
    | .targets = [.sizes[] | target("herd of \(.requests): 1 database read and no failures, every round";
        "reads \(.db_reads | join(" · ")), failed \(.failed)"; all(.db_reads[]; . == 1) and .failed == 0)]' \
    "$WORK/runs.jsonl"
