#!/usr/bin/env bash
# bench/transport.sh — the peer transport compared: tarpc (the default) against groupcache's
# HTTP wire (`--peer-transport http`), on peer loads through a frontend that does not own
# the keys, so every answer crosses the transport.
#
#   bash bench/transport.sh > transport.json     (the table goes to stderr at the end)
#   bash bench/transport.sh --render < transport.json
#
# Needs: wrk, taskset, curl, jq (apt-get install wrk util-linux curl jq).
# Knobs: ROUNDS=3 WRK_SECONDS=5 WARMUP_SECONDS=1 CONNECTIONS=16 PEER_KEYS=100
#        QUIET_WAIT=120; GCLAB=path to skip the release build.
#
# One dbserver (read delay 0 ms, so the transport is what is measured), pinned to CPU 0,
# holds 3 × PEER_KEYS keys. Each measurement starts three fresh frontends on 28001-28003
# (HTTP 29001-29003), pinned to CPU 0, with `--no-hot-cache` (frontend 1 never keeps a copy
# of another node's key: every get of one is a peer call) and the transport under test, and
# runs `wrk -t1 -cCONNECTIONS` on CPU 1 against frontend 1 for PEER_KEYS keys it does not
# own (bench/random-key.lua): WARMUP_SECONDS unmeasured, then WRK_SECONDS measured.
#   - cold: the frontends run with `--ttl 1ms`, so the owner's copy has always expired:
#     each answer is a peer call and the owner's read of the dbserver.
#   - warm: each key is warmed at its owner first: each answer is a peer call answered
#     from the owner's main cache, the hot path of a peer load.
# Rounds are interleaved (every row once, then again), and the medians reported. Peer
# connections: established TCP connections from frontend 1 to the other two's peer ports
# (28002-3 for tarpc, 29002-3 for HTTP), counted by `ss` halfway through the run.

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    "## The peer transport: tarpc vs HTTP",
    "",
    "Three frontends and a dbserver (read delay 0 ms) on 127.0.0.1, every server pinned to CPU \(.settings.server_cpu); `wrk \(.settings.wrk) -s bench/random-key.lua` on CPU \(.settings.wrk_cpu) asks frontend 1 for \(.settings.keys) keys that it does not own, with `--no-hot-cache`, so every answer is a peer call, or joins one already in flight for the same key (singleflight): by a peer call is frontend 1’s `peer_loads` / gets. Cold: `--ttl 1ms`, the owner reads the dbserver for each call; warm: each key warm at its owner. \(.settings.warmup_seconds) s of warm-up, then \(.settings.rounds | count("interleaved round")), medians. Peer connections: frontend 1’s established connections to its two peers, halfway through a run.",
    "",
    "| keys | transport | p50 | p99 | req/s | peer connections | by a peer call | errors | req/s by round |",
    "|---|---|---|---|---|---|---|---|---|",
    (.rows[] |
        "| \(.keys) | \(.transport) | \(.p50_ms) ms | \(.p99_ms) ms | \(.rps | round) | \(.connections) | \(.peer_share * 1000 | round / 10)% | \(.errors) | \([.rounds[].rps | round] | map(tostring) | join(" · ")) |"),
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

need wrk taskset:util-linux ss:iproute2
begin

WARMUP_SECONDS=${WARMUP_SECONDS:-1}
WRK_SECONDS=${WRK_SECONDS:-5}
CONNECTIONS=${CONNECTIONS:-16}
PEER_KEYS=${PEER_KEYS:-100}
VALUE_BYTES=30
SERVER_CPU=0 WRK_CPU=1
DB=127.0.0.1:28080
PEERS=28001,28002,28003
ME=127.0.0.1:28001
UNDER_TEST=http://127.0.0.1:29001
ports_free 28080 28001 28002 28003 29001 29002 29003

start_dbserver --cpu $SERVER_CPU $DB 0ms
candidates=$((3 * PEER_KEYS))
seq -f 'peerkey%.0f' $candidates | curl_config PUT "http://$DB/kv/%s" $VALUE_BYTES >"$WORK/put.cfg"
curl_all "$WORK/put.cfg" 204

# frontends TRANSPORT KEYS: three fresh frontends; their pids in FRONTENDS.
frontends() {
    local flags="--quiet-hits --no-hot-cache --peer-transport $1" port
    [[ $2 == warm ]] || flags+=" --ttl 1ms"
    FRONTENDS=()
    for port in 28001 28002 28003; do
        FRONTEND_FLAGS=$flags start_frontend --cpu $SERVER_CPU $port $PEERS $DB
        FRONTENDS+=("$LAST_PID")
        wait_for "http://127.0.0.1:$((port + 1000))/stats" "$LAST_PID"
    done
}

# keys: PEER_KEYS keys frontend 1 does not own, in $WORK/keys.txt, and where their owners
# serve clients, in $WORK/warm.cfg (the ring is the same on every start: the same names).
keys() {
    curl --no-progress-meter --max-time 30 "$UNDER_TEST/owner/peerkey[1-$candidates]" >"$WORK/owners.json"
    jq -r -s --arg me $ME --argjson n "$PEER_KEYS" 'map(select(.owner != $me))[:$n][] | .key' \
        "$WORK/owners.json" >"$WORK/keys.txt"
    (($(wc -l <"$WORK/keys.txt") == PEER_KEYS)) || die "too few keys owned by others"
    jq -r -s --arg me $ME --argjson n "$PEER_KEYS" \
        'map(select(.owner != $me))[:$n][] | "\(.owner | sub(":(?<p>[0-9]+)$"; ":\(.p | tonumber + 1000)"))/cache/\(.key)"' \
        "$WORK/owners.json" | curl_config GET "http://%s" >"$WORK/warm.cfg"
}

# What frontend 1's counters say; one wrk run of SECONDS against it (lib.sh).
counters() { peer_counters "$UNDER_TEST"; }
wrk_run() { WRK_CONNECTIONS=$CONNECTIONS run_wrk "$WRK_CPU" "$UNDER_TEST" "$WORK/keys.txt" "$1"; }

# peer_connections TRANSPORT: frontend 1's established connections to its peers.
peer_connections() {
    local base=28000
    [[ $1 == tarpc ]] || base=29000
    ss -Htn state established "( dport = :$((base + 2)) or dport = :$((base + 3)) )" | wc -l
}

# measure ROUND TRANSPORT KEYS: one row's run, appended to runs.jsonl.
measure() {
    local round=$1 transport=$2 keys=$3 before after result pid connections sampler
    frontends "$transport" "$keys"
    [[ -s $WORK/keys.txt ]] || keys
    [[ $keys != warm ]] || curl_all "$WORK/warm.cfg" 200
    wrk_run "$WARMUP_SECONDS" >/dev/null
    wait_for_quiet
    before=$(counters)
    (sleep $((WRK_SECONDS / 2)); peer_connections "$transport" >"$WORK/connections") &
    sampler=$!
    result=$(wrk_run "$WRK_SECONDS")
    wait "$sampler"
    connections=$(cat "$WORK/connections")
    after=$(counters)
    for pid in "${FRONTENDS[@]}"; do stop "$pid"; done
    jq -c -n --argjson round "$round" --arg transport "$transport" --arg keys "$keys" \
        --argjson r "$result" --argjson a "$before" --argjson b "$after" --argjson c "$connections" '
        {round: $round, transport: $transport, keys: $keys, requests: $r.requests, rps: $r.rps,
         errors: $r.errors, p50_ms: ($r.p50_us / 1000), p99_ms: ($r.p99_us / 1000), connections: $c,
         peer_share: (($b.peer_loads - $a.peer_loads) / ([$b.gets - $a.gets, 1] | max))}' >>"$WORK/runs.jsonl"
    tail -n1 "$WORK/runs.jsonl" | jq -r '"round \(.round), \(.keys) keys over \(.transport): p50 \(.p50_ms) ms · p99 \(.p99_ms) ms · \(.rps | round) req/s · \(.connections) peer connections · errors \(.errors)"' >&2
}

: >"$WORK/runs.jsonl"
: >"$WORK/keys.txt"
for ((round = 1; round <= ROUNDS; round++)); do
    for keys in cold warm; do
        for transport in tarpc http; do
            say "round $round of $ROUNDS: $keys keys over $transport"
            measure "$round" "$transport" "$keys"
        done
    done
done

jqm -s --argjson rounds "$ROUNDS" --arg wrk "-t1 -c$CONNECTIONS -d${WRK_SECONDS}s" --argjson keys "$PEER_KEYS" \
    --argjson warmup "$WARMUP_SECONDS" --argjson value_bytes $VALUE_BYTES \
    --argjson server_cpu $SERVER_CPU --argjson wrk_cpu $WRK_CPU 'include "lib";
    {name: "transport",
     settings: {rounds: $rounds, wrk: $wrk, keys: $keys, warmup_seconds: $warmup, value_bytes: $value_bytes,
                server_cpu: $server_cpu, wrk_cpu: $wrk_cpu},
     rows: (group_by([.keys, .transport]) | map(
        {keys: .[0].keys, transport: .[0].transport,
         p50_ms: (map(.p50_ms) | median), p99_ms: (map(.p99_ms) | median), rps: (map(.rps) | median),
         connections: (map(.connections) | median), peer_share: (map(.peer_share) | median | round(3)),
         errors: (map(.errors) | add), rounds: map(del(.keys, .transport))})
        | sort_by((.keys != "cold"), (.transport != "tarpc"))),
     targets: []}' "$WORK/runs.jsonl" | tee "$WORK/transport.json"
render <"$WORK/transport.json" >&2
