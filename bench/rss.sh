#!/usr/bin/env bash
# bench/rss.sh — memory per key: the resident set (VmRSS) of a frontend that owns every key,
# before and after it has cached RSS_KEYS keys of 100 bytes.
#
#   bash bench/rss.sh > rss.json              (bench/all.sh runs it with the others)
#
# Needs: curl, jq. Knobs: ROUNDS=3 RSS_KEYS=100000 SETTLE_SECONDS=3; GCLAB=path to skip the build.
#
# A dbserver without delay (100,000 cold reads at 300 ms would take a while) holds
# rsskey1..rsskeyN. Each round starts a fresh frontend that is its own only peer, so it
# owns every key, reads its VmRSS, reads every key through it once, and reads VmRSS again.
#
# PERF_DATA=file (used by profile.sh): instead of measuring, record the page faults of a
# fresh frontend (the first touch of each new page: who made the heap grow) while it
# caches a tenth of the keys.

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    "## Memory with \(.settings.keys) keys cached",
    "",
    "One frontend that is its own only peer (so it owns every key) reads rsskey1..rsskey\(.settings.keys) (\(.settings.value_bytes)-byte values) once each from a dbserver with no delay; a fresh frontend per round, \(.settings.rounds | count("round")), medians.",
    "",
    "| | median | by round |",
    "|---|---|---|",
    "| VmRSS at start | \(.idle_mib) MiB | \([.rounds[].idle_kib / 1024 * 10 | round / 10] | join(" · ")) |",
    "| VmRSS with \(.settings.keys) keys | **\(.full_mib) MiB** | \([.rounds[].full_kib / 1024 * 10 | round / 10] | join(" · ")) |",
    "| main cache items | \(.items) | |",
    "| main cache bytes (keys + values) | \(.cache_bytes) | |",
    "",
    "About **\(.rss_bytes_per_key) bytes of RSS per cached key** for \(.cache_bytes_per_key) bytes of key and value.",
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

begin

RSS_KEYS=${RSS_KEYS:-100000}
SETTLE_SECONDS=${SETTLE_SECONDS:-3}
VALUE_BYTES=100
DB=127.0.0.1:18081
PEER_PORT=18011
FRONTEND=http://127.0.0.1:19011
ports_free 18081 $PEER_PORT 19011

say "writing $RSS_KEYS keys with $VALUE_BYTES-byte values to a dbserver on $DB"
start_dbserver "$DB" 0ms
seq -f 'rsskey%.0f' "$RSS_KEYS" >"$WORK/keys.txt"
curl_config PUT "http://$DB/kv/%s" $VALUE_BYTES <"$WORK/keys.txt" >"$WORK/put.cfg"
curl_config GET "$FRONTEND/cache/%s" <"$WORK/keys.txt" >"$WORK/get.cfg"
curl_all "$WORK/put.cfg" 204

if [[ -n ${PERF_DATA:-} ]]; then
    start_frontend $PEER_PORT $PEER_PORT $DB
    pid=$LAST_PID
    wait_for "$FRONTEND/stats" "$pid"
    say "profiling page faults (perf record -e page-faults) while the frontend caches $((RSS_KEYS / 10)) keys"
    start perf timeout -s INT 300 perf record -e page-faults -c 10 --call-graph dwarf,8192 -o "$PERF_DATA" -p "$pid"
    perf_pid=$LAST_PID
    sleep 1
    head -n $((RSS_KEYS / 10)) "$WORK/keys.txt" | curl_config GET "$FRONTEND/cache/%s" >"$WORK/get-tenth.cfg"
    curl_all "$WORK/get-tenth.cfg" 200
    stop "$perf_pid" INT
    echo '{}'
    exit
fi

for ((round = 1; round <= ROUNDS; round++)); do
    start_frontend $PEER_PORT $PEER_PORT $DB
    pid=$LAST_PID
    wait_for "$FRONTEND/stats" "$pid"
    idle=$(vmrss_kib "$pid")
    curl_all "$WORK/get.cfg" 200
    # At rest: the allocator hands pages freed by the fill's request buffers back within
    # about a second (the binary sets jemalloc's decay; see src/bin/gclab.rs).
    sleep "$SETTLE_SECONDS"
    full=$(vmrss_kib "$pid")
    curl -fsS --max-time 5 "$FRONTEND/stats" |
        jq -c --argjson round "$round" --argjson idle "$idle" --argjson full "$full" \
            '{round: $round, idle_kib: $idle, full_kib: $full, items: .main_cache.items, cache_bytes: .main_cache.bytes}' \
            >>"$WORK/rounds.jsonl"
    tail -n1 "$WORK/rounds.jsonl" | jq -r '"round \(.round): VmRSS \(.idle_kib / 1024 | floor) MiB at start, \(.full_kib / 1024 | floor) MiB with \(.items) keys cached (\(.cache_bytes) bytes of keys + values)"' >&2
    stop "$pid"
done

jqm -s --argjson rounds "$ROUNDS" --argjson keys "$RSS_KEYS" --argjson value_bytes $VALUE_BYTES 'include "lib";
    (map(.idle_kib) | median) as $idle | (map(.full_kib) | median) as $full |
    {name: "rss",
     settings: {rounds: $rounds, keys: $keys, value_bytes: $value_bytes},
     idle_mib: ($idle / 1024 | round(1)), full_mib: ($full / 1024 | round(1)),
     items: (map(.items) | median), cache_bytes: (map(.cache_bytes) | median),
     rss_bytes_per_key: (($full - $idle) * 1024 / $keys | round),
     cache_bytes_per_key: ((map(.cache_bytes) | median) / $keys | round),
     rounds: .}
    | .targets = [target("RSS with \($keys) keys of \($value_bytes) bytes ≤ 32 MiB"; "\(.full_mib) MiB"; .full_mib <= 32)]' \
    "$WORK/rounds.jsonl"
