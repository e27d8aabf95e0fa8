#!/usr/bin/env bash
# bench/ab.sh — cache-hit throughput of two gclab binaries, side by side, in one run.
#
#   bash bench/ab.sh OLD_BINARY NEW_BINARY        e.g. a release build of the last commit
#                                                 against one of the working tree
#
# Needs: wrk, taskset, curl, jq. Knobs: ROUNDS=3 WRK_SECONDS=10 HIT_KEYS=100 QUIET_WAIT=120,
# and A_FLAGS / B_FLAGS: more flags for each side's frontends, to compare two settings of
# one binary (bench/events.sh: `--events 0` against the default).
#
# Each binary gets its own topology (a dbserver and three frontends, every server on CPU 0);
# `wrk -t1 -c32` on CPU 1 asks one frontend for keys it owns (its main cache), in
# interleaved rounds (a, b, a, b, ...). Prints each round on stderr and the medians of req/s
# and of the frontend's CPU per request (utime + stime over the run's requests, which does
# not depend on how much of the machine wrk left it), with b/a, as one JSON object on stdout. Not part of bench/all.sh: it answers "what did this
# change cost the hit path", for a closing note.

source "$(dirname "$0")/lib.sh"

(($# == 2)) || die "usage: bash bench/ab.sh OLD_BINARY NEW_BINARY"
[[ -x $1 && -x $2 ]] || die "both arguments must be gclab binaries"
GCLAB=$1 # begin() then skips the build
need wrk taskset:util-linux
begin
HIT_KEYS=${HIT_KEYS:-100}

declare -A FLAGS=([a]=${A_FLAGS:-} [b]=${B_FLAGS:-})
declare -A BIN=([a]=$1 [b]=$2) DB=([a]=127.0.0.1:18080 [b]=127.0.0.1:18081) PID=()
declare -A PEERS=([a]=18001,18002,18003 [b]=18011,18012,18013)
ports_free 18080 18081 18001 18002 18003 18011 18012 18013 19001 19002 19003 19011 19012 19013

for side in a b; do
    say "$side: ${BIN[$side]} ${FLAGS[$side]}, dbserver ${DB[$side]}, frontends ${PEERS[$side]}, on CPU 0"
    GCLAB=${BIN[$side]} start_dbserver --cpu 0 "${DB[$side]}" 0ms
    for port in ${PEERS[$side]//,/ }; do
        GCLAB=${BIN[$side]} FRONTEND_FLAGS=${FLAGS[$side]} start_frontend --cpu 0 "$port" "${PEERS[$side]}" "${DB[$side]}"
        wait_for "http://127.0.0.1:$((port + 1000))/stats" "$LAST_PID"
        [[ $port != "${PEERS[$side]%%,*}" ]] || PID[$side]=$LAST_PID
    done
    port=${PEERS[$side]%%,*}
    url=http://127.0.0.1:$((port + 1000))
    seq -f 'key%.0f' $((5 * HIT_KEYS)) | curl_config PUT "http://${DB[$side]}/kv/%s" 30 >"$WORK/put-$side.cfg"
    curl_all "$WORK/put-$side.cfg" 204
    curl --no-progress-meter --max-time 30 "$url/owner/key[1-$((5 * HIT_KEYS))]" |
        jq -r --arg me "127.0.0.1:$port" 'select(.owner == $me) | .key' | head -n "$HIT_KEYS" >"$WORK/own-$side.txt"
    curl_config GET "$url/cache/%s" <"$WORK/own-$side.txt" >"$WORK/own-$side.cfg"
    curl_all "$WORK/own-$side.cfg" 200
    run_wrk 1 "$url" "$WORK/own-$side.txt" 2 >/dev/null # warm-up
done

for ((round = 1; round <= ROUNDS; round++)); do
    for side in a b; do
        wait_for_quiet
        port=${PEERS[$side]%%,*}
        ticks=$(cpu_ticks "${PID[$side]}")
        result=$(run_wrk 1 "http://127.0.0.1:$((port + 1000))" "$WORK/own-$side.txt")
        ticks=$(($(cpu_ticks "${PID[$side]}") - ticks))
        jq -c --arg side "$side" --argjson round "$round" --argjson ticks "$ticks" --argjson hz "$CLK_TCK" \
            '{side: $side, round: $round} + . + {cpu_us_per_req: ($ticks * 1e6 / $hz / .requests * 100 | round / 100)}' \
            <<<"$result" >>"$WORK/ab.jsonl"
        tail -n1 "$WORK/ab.jsonl" | jq -r '"round \(.round) \(.side): \(.rps | round) req/s · \(.cpu_us_per_req) µs CPU/req · p50 \(.p50_us) µs · p99 \(.p99_us) µs · errors \(.errors)"' >&2
    done
done
stop_all

jqm -s --arg a "$1" --arg b "$2" --arg fa "${FLAGS[a]}" --arg fb "${FLAGS[b]}" 'include "lib";
    (group_by(.side) | map({key: .[0].side, value: {rps: (map(.rps) | median | round),
        cpu_us_per_req: (map(.cpu_us_per_req) | median),
        p50_us: (map(.p50_us) | median), p99_us: (map(.p99_us) | median),
        errors: (map(.errors) | add), rounds: map(.rps | round)}}) | from_entries) as $s
    | {a: ({binary: $a, flags: $fa} + $s.a), b: ({binary: $b, flags: $fb} + $s.b),
       b_vs_a: {rps: ($s.b.rps / $s.a.rps | round(3)), cpu_us_per_req: ($s.b.cpu_us_per_req / $s.a.cpu_us_per_req | round(3))}}' "$WORK/ab.jsonl"
