#!/usr/bin/env bash
# bench/changes.sh — what following the change stream costs and buys.
#
#   bash bench/changes.sh > changes.json         (bench/all.sh runs it with the others)
#
# Needs: wrk, taskset, curl, jq (apt-get install wrk util-linux curl jq).
# Knobs: ROUNDS=3 WRK_SECONDS=10 SETS=1000 HIT_KEYS=100 QUIET_WAIT=120; GCLAB=path.
#
# Two measurements, with every server on CPU 0 and the load (cli, wrk) on CPU 1:
#   propagation  SETS runs of `gclab cli set --json`, one after another, against three
#                frontends started with --follow-changes; each reports `seen_ms`, the time
#                from the dbserver's acknowledgement of the write to the last of the three
#                frontends reporting it applied (GET /applied, a long poll). p50, p99, max.
#   hits         cache-hit throughput through one frontend (keys it owns, main cache), of
#                two topologies side by side, one following changes and one not, in
#                interleaved rounds (off, on, off, on, ...), `wrk -t1 -c32`; medians, and
#                on/off.

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    "## Changing data",
    "",
    "### Propagation of a write",
    "",
    "\(.settings.sets) runs of `gclab cli set --json` against three frontends with `--follow-changes` (servers on CPU 0, the cli on CPU 1). `seen_ms`: from the dbserver’s acknowledgement to the last frontend’s report that it applied the version.",
    "",
    "| | p50 | p99 | max | seen by all 3 |",
    "|---|---|---|---|---|",
    "| from acknowledgement to all 3 frontends | \(.propagation.p50_ms) ms | \(.propagation.p99_ms) ms | \(.propagation.max_ms) ms | \(.propagation.seen_by_all) of \(.propagation.sets) |",
    "| the set itself (acknowledged, flushed) | \(.propagation.set_p50_ms) ms | \(.propagation.set_p99_ms) ms | | |",
    "",
    "### Cache hits with and without --follow-changes",
    "",
    "`wrk \(.settings.wrk) -s bench/random-key.lua` over \(.settings.keys) keys the frontend owns; \(.settings.rounds | count("interleaved round")), medians; servers on CPU 0, wrk on CPU 1.",
    "",
    "| frontend | req/s | p50 | p99 | req/s by round |",
    "|---|---|---|---|---|",
    (.hits | to_entries[] | "| \(.key) | \(.value.rps | round) | \(.value.p50_ms) ms | \(.value.p99_ms) ms | \([.value.rounds[].rps | round] | join(" · ")) |"),
    "",
    "With the stream on, hits run at \(.hits_on_vs_off)× the throughput with it off.",
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

need wrk taskset:util-linux
begin

SETS=${SETS:-1000}
HIT_KEYS=${HIT_KEYS:-100}
SERVER_CPU=0 LOAD_CPU=1

# Two topologies: "off" (groupcache's semantics) and "on" (--follow-changes).
declare -A DB=([off]=127.0.0.1:18080 [on]=127.0.0.1:18081)
declare -A PEERS=([off]=18001,18002,18003 [on]=18011,18012,18013)
declare -A FRONTEND=([off]=127.0.0.1:19001 [on]=127.0.0.1:19011)
declare -A PID=()
ports_free 18080 18081 18001 18002 18003 18011 18012 18013 19001 19002 19003 19011 19012 19013

for mode in off on; do
    follow=()
    [[ $mode == off ]] || follow=(--follow-changes)
    say "follow $mode: a dbserver on ${DB[$mode]}, frontends ${PEERS[$mode]} ${follow[*]:-}, all on CPU $SERVER_CPU"
    start_dbserver --cpu $SERVER_CPU "${DB[$mode]}" 0ms
    for port in ${PEERS[$mode]//,/ }; do
        start --cpu $SERVER_CPU "frontend-$port" "$GCLAB" frontend --port "$port" \
            --peers "${PEERS[$mode]}" --db "${DB[$mode]}" "${follow[@]}"
        wait_for "http://127.0.0.1:$((port + 1000))/stats" "$LAST_PID"
        [[ $port != "${PEERS[$mode]%%,*}" ]] || PID[$mode]=$LAST_PID
    done
done

# ---- propagation ----
frontends=$(for port in ${PEERS[on]//,/ }; do printf '127.0.0.1:%d,' $((port + 1000)); done)
frontends=${frontends%,}
# Wait until all three follow (they report following once their stream is open).
for port in ${PEERS[on]//,/ }; do
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -fsS "http://127.0.0.1:$((port + 1000))/applied?wait_ms=0" | jq .following) == true ]] && break
        sleep 0.1
    done
done
say "propagation: $SETS sets, each waiting for 3 frontends (cli on CPU $LOAD_CPU)"
for ((i = 1; i <= SETS; i++)); do
    on_cpu $LOAD_CPU "$GCLAB" cli set --json --key "key$((i % 100))" --value "value $i" \
        --db "${DB[on]}" --frontends "$frontends"
done >"$WORK/sets.jsonl"
propagation=$(jqm -s 'include "lib";
    def pct(p): sort | .[((length - 1) * p | floor)];
    {sets: length,
     seen_by_all: map(select(.seen_by == 3)) | length,
     p50_ms: (map(.seen_ms) | pct(0.5)), p99_ms: (map(.seen_ms) | pct(0.99)), max_ms: (map(.seen_ms) | max),
     set_p50_ms: (map(.ms) | pct(0.5)), set_p99_ms: (map(.ms) | pct(0.99))}' "$WORK/sets.jsonl")
note "propagation: $(jq -c . <<<"$propagation")"

# ---- hits, off vs on ----
for mode in off on; do
    port=${PEERS[$mode]%%,*}
    me=127.0.0.1:$port
    url=http://${FRONTEND[$mode]}
    seq -f 'key%.0f' $((5 * HIT_KEYS)) | curl_config PUT "http://${DB[$mode]}/kv/%s" 30 >"$WORK/put-$mode.cfg"
    curl_all "$WORK/put-$mode.cfg" 204
    curl --no-progress-meter --max-time 30 "$url/owner/key[1-$((5 * HIT_KEYS))]" >"$WORK/owners-$mode.json"
    jq -r --arg me "$me" 'select(.owner == $me) | .key' "$WORK/owners-$mode.json" | head -n "$HIT_KEYS" >"$WORK/own-$mode.txt"
    curl_config GET "$url/cache/%s" <"$WORK/own-$mode.txt" >"$WORK/own-$mode.cfg"
    curl_all "$WORK/own-$mode.cfg" 200
    run_wrk $LOAD_CPU "$url" "$WORK/own-$mode.txt" 2 >/dev/null # warm-up
done
for ((round = 1; round <= ROUNDS; round++)); do
    for mode in off on; do
        wait_for_quiet
        result=$(run_wrk $LOAD_CPU "http://${FRONTEND[$mode]}" "$WORK/own-$mode.txt")
        jq -c --arg mode "$mode" --argjson round "$round" \
            '{mode: $mode, round: $round} + . + {p50_ms: (.p50_us / 1000), p99_ms: (.p99_us / 1000)}' \
            <<<"$result" >>"$WORK/hits.jsonl"
        tail -n1 "$WORK/hits.jsonl" | jq -r '"hits, follow \(.mode), round \(.round): \(.rps | round) req/s · p50 \(.p50_ms) ms · p99 \(.p99_ms) ms · errors \(.errors)"' >&2
    done
done
stop_all

jqm -s --argjson rounds "$ROUNDS" --argjson keys "$HIT_KEYS" --arg wrk "$WRK_ARGS" \
    --argjson sets "$SETS" --argjson propagation "$propagation" 'include "lib";
    (group_by(.mode) | map({key: .[0].mode, value: {
        rps: (map(.rps) | median), p50_ms: (map(.p50_ms) | median), p99_ms: (map(.p99_ms) | median),
        errors: (map(.errors) | add), rounds: map({round, rps, p50_ms, p99_ms})}}) | from_entries) as $hits
    | ($hits.on.rps / $hits.off.rps | round(3)) as $ratio
    | {name: "changes",
       settings: {rounds: $rounds, wrk: $wrk, keys: $keys, sets: $sets},
       propagation: $propagation, hits: $hits, hits_on_vs_off: $ratio,
       targets: [
         target("propagation p99 ≤ 10 ms (ack to all 3 frontends)"; "p50 \($propagation.p50_ms) ms · p99 \($propagation.p99_ms) ms"; $propagation.p99_ms <= 10 and $propagation.seen_by_all == $propagation.sets),
         target("hits with --follow-changes ≥ 0.95× without"; "\($hits.on.rps | round) vs \($hits.off.rps | round) req/s = \($ratio)×"; $ratio >= 0.95 and $hits.on.errors == 0)
       ]}' "$WORK/hits.jsonl"
