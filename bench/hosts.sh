#!/usr/bin/env bash
# bench/hosts.sh — what a peer load costs between hosts: the latency of a cget through a
# frontend that does not own the key, with the network fast (0 ms) and slow (20 ms added by
# every host), with the hot cache on and off. Runs as root, on lab/hosts.sh's namespaces.
#
#   sudo bash bench/hosts.sh > hosts.json       (the table goes to stderr at the end)
#   bash bench/hosts.sh --render < hosts.json   the table again, from the JSON
#
# Needs: root, iproute2, wrk, taskset, curl, jq (apt-get install iproute2 wrk util-linux curl
# jq), netem in the kernel or iptables (for gclab wire) for the 20 ms rows, and a gclab with `frontend --no-hot-cache` for
# the hot-cache-off rows (each row that cannot run is reported as skipped, with why).
# Knobs: ROUNDS=3 WRK_SECONDS=10 WARMUP_SECONDS=2 CONNECTIONS=8 PEER_KEYS=100 DELAYS="0ms 20ms"
#        QUIET_WAIT=120; GCLAB=path to skip the release build.
#
# Each measurement starts lab/hosts.sh up 3 afresh (frontends 10.77.0.11-13, the dbserver
# 10.77.0.10, with the dbserver's read delay at 0: only the warm-up reads it), pins every
# server to CPU 0, writes PEER_KEYS keys that frontend 1 does NOT own, warms each at its
# owner (one cget there: now it is in the owner's main cache), sets the delay, and runs
# `wrk -t1 -cCONNECTIONS` from the root namespace, on CPU 1, asking frontend 1 for those
# keys at random (bench/random-key.lua): WARMUP_SECONDS unmeasured, then WRK_SECONDS
# measured. So every answer is a peer call to the owner, unless frontend 1 has since put
# the key in its hot cache (one peer load in ten does): "by a peer call" says which share.
# Rounds are interleaved (each row once, then again), and the medians reported.
#
# CONNECTIONS=8, not the 32 of hits.sh: this measures how long one peer load takes, not how
# many a CPU can do, and 32 connections on 2 cores would measure the queue in front of it.
#
# With `delay 20ms` every host delays what it sends, so a peer load through frontend 1 pays
# the cli's round trip to frontend 1 (20 ms: only frontend 1's answer is delayed) and the
# peer call's (40 ms: both hosts delay theirs): about 60 ms; a hot-cache hit pays 20.

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    def ms: if . == null then "–" else tostring + " ms" end;
    def pct: if . == null then "–" else (. * 1000 | round / 10 | tostring) + "%" end;
    "## Peer loads between hosts",
    "",
    "`lab/hosts.sh up 3`, every server in a network namespace of its own, pinned to CPU \(.settings.server_cpu); `wrk \(.settings.wrk) -s bench/random-key.lua` on CPU \(.settings.wrk_cpu), from the root namespace, asks frontend 1 (10.77.0.11:9001) for \(.settings.keys) keys that it does not own, each warm at its owner; \(.settings.warmup_seconds) s of warm-up, then \(.settings.rounds | count("interleaved round")), medians. Added delay: `lab/hosts.sh delay D` (netem, or gclab wire where the kernel has none, on every host’s interface: 2 × D per round trip between hosts, D between the root namespace and a host). By a peer call: frontend 1’s peer_loads / gets during the run (the rest came from its hot cache).",
    "",
    "| added delay | hot cache | p50 | p99 | req/s | by a peer call | errors | p50 by round |",
    "|---|---|---|---|---|---|---|---|",
    (.rows[] |
        if .skipped then "| \(.delay) | \(.hot) | skipped: \(.skipped) | | | | | |"
        else "| \(.delay) | \(.hot) | \(.p50_ms | ms) | \(.p99_ms | ms) | \(.rps | round) | \(.peer_share | pct) | \(.errors) | \([.rounds[].p50_ms] | map(tostring) | join(" · ")) |"
        end),
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

need ip:iproute2 tc:iproute2 wrk taskset:util-linux
((EUID == 0)) || die "bench/hosts.sh needs root (ip netns, via lab/hosts.sh): run it with sudo"
begin

WARMUP_SECONDS=${WARMUP_SECONDS:-2}
CONNECTIONS=${CONNECTIONS:-8}
PEER_KEYS=${PEER_KEYS:-100}
DELAYS=${DELAYS:-0ms 20ms}
VALUE_BYTES=30
SERVER_CPU=0 WRK_CPU=1

HOSTS=(bash "$ROOT/lab/hosts.sh")
export GCLAB_HOSTS_DIR=$WORK/hosts
# curl (here and in lib.sh) must not send 10.77.0.x to a proxy from the environment.
export NO_PROXY='*' no_proxy='*'
DB=10.77.0.10:8080
ME=10.77.0.11:8001                      # frontend 1, under test, as the ring names it
UNDER_TEST=http://10.77.0.11:9001

# Whatever happens, the namespaces go: then lib.sh's cleanup, with this script's status.
bench_cleanup() {
    local status=$?
    "${HOSTS[@]}" down >>"$WORK/hosts.log" 2>&1 || note "warning: lab/hosts.sh down failed; see $WORK/hosts.log"
    (exit "$status")
    cleanup
}
trap bench_cleanup EXIT
# Another lab/hosts.sh lab up would make every `up` refuse; it is not ours to take down.
[[ -z $(ip netns list | grep -E '^gclab-(db|[0-9]+)( |$)' || true) ]] ||
    die "a lab/hosts.sh lab is up (ip netns list shows gclab-*): take it down with lab/hosts.sh down first"

# What this binary and this kernel can do: a row that cannot run says so instead.
NO_HOT_CACHE_SKIP=
[[ $("$GCLAB" frontend --help) == *--no-hot-cache* ]] ||
    NO_HOT_CACHE_SKIP="this gclab has no frontend --no-hot-cache"
DELAY_SKIP=

# up HOT: a fresh lab; every server pinned to SERVER_CPU; PEER_KEYS keys frontend 1 does not
# own, written, and warm at their owners, in $WORK/keys.txt.
up() {
    local flags="--quiet-hits" pid dir=$WORK/setup
    [[ $1 == on ]] || flags+=" --no-hot-cache"
    FRONTEND_FLAGS=$flags DB_FLAGS="--delay 0ms" "${HOSTS[@]}" up 3 >>"$WORK/hosts.log" 2>&1 ||
        die "lab/hosts.sh up 3 failed: $(tail -n 5 "$WORK/hosts.log")"
    # -a: every thread; threads started later inherit the affinity of the thread that
    # starts them.
    for pid in $(cat "$GCLAB_HOSTS_DIR"/pids/*); do taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null; done
    mkdir -p "$dir"
    # Candidates peerkey1..peerkey(3 × PEER_KEYS); frontend 1 owns about a third of them.
    local candidates=$((3 * PEER_KEYS))
    seq -f 'peerkey%.0f' $candidates | curl_config PUT "http://$DB/kv/%s" $VALUE_BYTES >"$dir/put.cfg"
    curl_all "$dir/put.cfg" 204
    curl --no-progress-meter --max-time 30 "$UNDER_TEST/owner/peerkey[1-$candidates]" >"$dir/owners.json"
    # (jq picks the first PEER_KEYS itself: `| head` would close the pipe on jq, and
    # pipefail would make that jq's SIGPIPE a failure.)
    jq -r -s --arg me $ME --argjson n "$PEER_KEYS" 'map(select(.owner != $me))[:$n][] | .key' \
        "$dir/owners.json" >"$WORK/keys.txt"
    (($(wc -l <"$WORK/keys.txt") == PEER_KEYS)) ||
        die "only $(wc -l <"$WORK/keys.txt") of $candidates keys are owned by others; need $PEER_KEYS"
    # Warm each key at its owner: owner 10.77.0.12:8001 serves clients at 10.77.0.12:9001.
    jq -r -s --arg me $ME --argjson n "$PEER_KEYS" \
        'map(select(.owner != $me))[:$n][] | "\(.owner | sub(":8001$"; ":9001"))/cache/\(.key)"' \
        "$dir/owners.json" | curl_config GET "http://%s" >"$dir/warm.cfg"
    curl_all "$dir/warm.cfg" 200
}

# What frontend 1's counters say; one wrk run of SECONDS against it (lib.sh).
counters() { peer_counters "$UNDER_TEST"; }
wrk_run() { WRK_CONNECTIONS=$CONNECTIONS run_wrk "$WRK_CPU" "$UNDER_TEST" "$WORK/keys.txt" "$1"; }

# measure ROUND HOT DELAY: one row's run, appended to runs.jsonl (or why it was skipped).
measure() {
    local round=$1 hot=$2 delay=$3 out before after result skip=
    [[ $hot == on || -z $NO_HOT_CACHE_SKIP ]] || skip=$NO_HOT_CACHE_SKIP
    [[ $delay == 0ms || -z $DELAY_SKIP ]] || skip=$DELAY_SKIP
    if [[ -n $skip ]]; then
        jq -c -n --argjson round "$round" --arg hot "$hot" --arg delay "$delay" --arg why "$skip" \
            '{round: $round, hot: $hot, delay: $delay, skipped: $why}' >>"$WORK/runs.jsonl"
        return
    fi
    up "$hot"
    if [[ $delay != 0ms ]] && ! out=$("${HOSTS[@]}" delay "$delay" 2>&1); then
        # Neither netem nor gclab wire (no iptables), or another reason: no delayed row can run.
        DELAY_SKIP=${out#hosts.sh: }
        note "delay $delay: $DELAY_SKIP"
        "${HOSTS[@]}" down >>"$WORK/hosts.log" 2>&1
        measure "$round" "$hot" "$delay"
        return
    fi
    wrk_run "$WARMUP_SECONDS" >/dev/null
    wait_for_quiet
    before=$(counters)
    result=$(wrk_run "$WRK_SECONDS")
    after=$(counters)
    "${HOSTS[@]}" down >>"$WORK/hosts.log" 2>&1
    jq -c -n --argjson round "$round" --arg hot "$hot" --arg delay "$delay" --argjson r "$result" \
        --argjson a "$before" --argjson b "$after" '
        {round: $round, hot: $hot, delay: $delay, requests: $r.requests, rps: $r.rps, errors: $r.errors,
         p50_ms: ($r.p50_us / 1000), p99_ms: ($r.p99_us / 1000), max_ms: ($r.max_us / 1000),
         peer_share: (($b.peer_loads - $a.peer_loads) / ([$b.gets - $a.gets, 1] | max))}' >>"$WORK/runs.jsonl"
    tail -n1 "$WORK/runs.jsonl" | jq -r '"round \(.round), delay \(.delay), hot cache \(.hot): p50 \(.p50_ms) ms · p99 \(.p99_ms) ms · \(.rps | round) req/s · by a peer call \(.peer_share * 1000 | round / 10)% · errors \(.errors)"' >&2
}

: >"$WORK/runs.jsonl"
for ((round = 1; round <= ROUNDS; round++)); do
    for hot in on off; do
        for delay in $DELAYS; do
            say "round $round of $ROUNDS: delay $delay, hot cache $hot"
            measure "$round" "$hot" "$delay"
        done
    done
done

jqm -s --argjson rounds "$ROUNDS" --arg wrk "-t1 -c$CONNECTIONS -d${WRK_SECONDS}s" --argjson keys "$PEER_KEYS" \
    --argjson warmup "$WARMUP_SECONDS" --argjson value_bytes $VALUE_BYTES \
    --argjson server_cpu $SERVER_CPU --argjson wrk_cpu $WRK_CPU 'include "lib";
    {name: "hosts",
     settings: {rounds: $rounds, wrk: $wrk, keys: $keys, warmup_seconds: $warmup, value_bytes: $value_bytes,
                server_cpu: $server_cpu, wrk_cpu: $wrk_cpu},
     rows: (group_by([.delay, .hot]) | map(
        if .[0].skipped then {delay: .[0].delay, hot: .[0].hot, skipped: .[0].skipped}
        else {delay: .[0].delay, hot: .[0].hot,
              p50_ms: (map(.p50_ms) | median), p99_ms: (map(.p99_ms) | median), rps: (map(.rps) | median),
              peer_share: (map(.peer_share) | median | round(3)), errors: (map(.errors) | add),
              rounds: map(del(.delay, .hot))}
        end)
        # 0 ms before 20 ms (as numbers, not strings), hot cache on before off.
        | sort_by((.delay | sub("ms$"; "") | tonumber? // 0), (.hot != "on"))),
     targets: []}' "$WORK/runs.jsonl" | tee "$WORK/hosts.json"
render <"$WORK/hosts.json" >&2
