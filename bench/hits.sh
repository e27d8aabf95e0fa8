#!/usr/bin/env bash
# bench/hits.sh — cache-hit throughput through one frontend, against nginx serving a file.
#
#   bash bench/hits.sh > hits.json            (bench/all.sh runs it with the others)
#
# Needs: wrk, nginx, taskset, curl, jq (apt-get install wrk nginx-light util-linux curl jq).
# Knobs: ROUNDS=3 WRK_SECONDS=10 HIT_KEYS=100 WARMUP_SECONDS=2 MODES="pinned unpinned"
#        QUIET_WAIT=120; GCLAB=path to skip the build.
#
# Three workloads, each `wrk -t1 -c32` asking GET /cache/KEY over HIT_KEYS keys:
#   gclab_own  keys frontend 18001 owns: every answer comes from its main cache;
#   gclab_hot  keys the other frontends own, put in 18001's hot cache first: every answer
#              comes from there (no peer call);
#   nginx      the same paths from nginx, one 30-byte file like gclab's 30-byte values:
#              the most an HTTP server does on this machine.
# Rounds are interleaved (own, hot, nginx, own, ...) so a slow minute hurts all three alike;
# medians are reported. For each run the server's CPU time (utime + stime) over its
# requests gives CPU µs per request, which, unlike req/s, does not depend on how much of
# the machine wrk left the server.
#
# In two modes: pinned, every server on CPU 0 (so tokio has one worker, and nginx one
# worker) and wrk on CPU 1, so they do not fight over cores; unpinned, as a user runs it.
#
# PERF_DATA=file (used by profile.sh): set up the pinned mode, then run gclab_own once
# under `perf record` of the frontend into that file instead of measuring.

source "$(dirname "$0")/lib.sh"

render() {
    jqm -r 'include "lib";
    def ms: tostring + " ms";
    def x: if . == null then "–" else (. * 100 | round / 100 | tostring) + "×" end;
    "## Cache hits through one frontend",
    "",
    "`wrk \(.settings.wrk) -s bench/random-key.lua` over \(.settings.keys) keys per workload, \(.settings.value_bytes)-byte values, `RUST_LOG=\(.settings.rust_log)`; \(.settings.rounds | count("interleaved round")) (own, hot, nginx, …), medians. gclab_own: keys the frontend owns (main cache); gclab_hot: keys other frontends own, in its hot cache; nginx: a \(.settings.value_bytes)-byte file for every path. CPU per request: the server process’s utime + stime (nginx: its workers) over the requests of the run.",
    "",
    (.modes | to_entries[] |
        "### \(.key)" + (if .key == "pinned" then " (every server on CPU 0, wrk on CPU 1)" else " (no taskset)" end),
        "",
        "| workload | req/s | × nginx | p50 | p99 | CPU µs/req | × nginx | errors | req/s by round |",
        "|---|---|---|---|---|---|---|---|---|",
        (.value as $m | ["gclab_own", "gclab_hot", "nginx"][] as $w | $m[$w] |
            "| \($w) | \(.rps | round) | \(.vs_nginx.rps | x) | \(.p50_ms | ms) | \(.p99_ms | ms) | \(.cpu_us_per_req) | \(.vs_nginx.cpu_us_per_req | x) | \(.errors) | \([.rounds[].rps | round] | join(" · ")) |"),
        "")'
}
[[ ${1:-} != --render ]] || { render; exit; }

need wrk nginx:nginx-light taskset:util-linux
begin

HIT_KEYS=${HIT_KEYS:-100}
WARMUP_SECONDS=${WARMUP_SECONDS:-2}
MODES=${MODES:-pinned unpinned}
VALUE_BYTES=30

DB=127.0.0.1:18080
PEERS=18001,18002,18003
ME=127.0.0.1:18001                      # the frontend under test, as the ring names it
UNDER_TEST=http://127.0.0.1:19001
NGINX_PORT=18090
ports_free 18080 18001 18002 18003 19001 19002 19003 $NGINX_PORT

# setup MODE: starts the topology and nginx for MODE, and writes the key files. Sets
# SERVER_CPU, WRK_CPU, FRONTEND_PID, NGINX_PID.
setup() {
    local mode=$1 workers=auto port pids=() pid dir=$WORK/$1
    SERVER_CPU= WRK_CPU=
    if [[ $mode == pinned ]]; then SERVER_CPU=0 WRK_CPU=1 workers=1; fi
    mkdir -p "$dir"

    say "$mode: a dbserver on $DB, frontends on 19001..19003, nginx on $NGINX_PORT${SERVER_CPU:+, all on CPU $SERVER_CPU}"
    start_dbserver --cpu "$SERVER_CPU" "$DB" 0ms        # no delay: only the warm-up reads it
    for port in ${PEERS//,/ }; do
        start_frontend --cpu "$SERVER_CPU" "$port" "$PEERS" "$DB"
        pids+=("$port:$LAST_PID")
        [[ $port != 18001 ]] || FRONTEND_PID=$LAST_PID
    done
    for pid in "${pids[@]}"; do wait_for "http://127.0.0.1:$((${pid%:*} + 1000))/stats" "${pid#*:}"; done

    # Candidate keys key1..key(5×HIT_KEYS) with 30-byte values; /owner (the Get path's own
    # rendezvous ranking) splits them, and the first HIT_KEYS of each side are used. With
    # three frontends, 18001 owns about a third of them.
    local candidates=$((5 * HIT_KEYS))
    seq -f 'key%.0f' $candidates | curl_config PUT "http://$DB/kv/%s" $VALUE_BYTES >"$dir/put.cfg"
    curl_all "$dir/put.cfg" 204
    curl --no-progress-meter --max-time 30 "$UNDER_TEST/owner/key[1-$candidates]" >"$dir/owners.json"
    OWN_KEYS=$dir/own.txt HOT_KEYS=$dir/hot.txt
    jq -r --arg me $ME 'select(.owner == $me) | .key' "$dir/owners.json" | head -n "$HIT_KEYS" >"$OWN_KEYS"
    jq -r --arg me $ME 'select(.owner != $me) | .key' "$dir/owners.json" | head -n "$HIT_KEYS" >"$HOT_KEYS"
    (($(wc -l <"$OWN_KEYS") == HIT_KEYS && $(wc -l <"$HOT_KEYS") == HIT_KEYS)) ||
        die "18001 owns $(wc -l <"$OWN_KEYS") of $candidates keys; need $HIT_KEYS owned and $HIT_KEYS not"

    # Fill the caches. An own key lands in the main cache on its first get. A hot key lands
    # in the hot cache with probability 1/10 per peer fetch, so ask for all of them again
    # until all are there (after n passes a key is missing with probability 0.9^n).
    local pass hot
    curl_config GET "$UNDER_TEST/cache/%s" <"$OWN_KEYS" >"$dir/own.cfg"
    curl_config GET "$UNDER_TEST/cache/%s" <"$HOT_KEYS" >"$dir/hot.cfg"
    curl_all "$dir/own.cfg" 200
    local size
    size=$(curl -fsS "$UNDER_TEST/cache/$(head -n1 "$OWN_KEYS")" | wc -c)
    ((size == VALUE_BYTES)) || die "a value is $size bytes, not $VALUE_BYTES"
    for ((pass = 1; pass <= 300; pass++)); do
        curl_all "$dir/hot.cfg" 200
        hot=$(curl -fsS "$UNDER_TEST/stats" | jq .hot_cache.items)
        ((hot < HIT_KEYS)) || break
    done
    ((hot == HIT_KEYS)) || die "after $pass passes the hot cache holds $hot of $HIT_KEYS keys"
    note "hot cache filled in $pass passes"

    # nginx, with every path in $WORK. Started as root, its workers run as nobody, so the
    # files must be readable by others and $WORK (private, from mktemp) passable.
    mkdir -p "$dir/nginx/www" "$dir/nginx/tmp"
    printf '%-*s' $VALUE_BYTES 'value of key1' >"$dir/nginx/www/value"
    sed -e "s|@DIR@|$dir/nginx|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@WORKERS@|$workers|g" \
        "$BENCH/nginx.conf.template" >"$dir/nginx/nginx.conf"
    chmod a+x "$WORK" "$dir"
    chmod -R a+rX "$dir/nginx"
    start --cpu "$SERVER_CPU" nginx-$mode nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf"
    NGINX_PID=$LAST_PID
    wait_for "http://127.0.0.1:$NGINX_PORT/cache/key1" "$NGINX_PID"
}

# workload NAME: sets URL, KEYS and PID (whose CPU is counted) for a workload.
workload() {
    case $1 in
        gclab_own) URL=$UNDER_TEST KEYS=$OWN_KEYS PID=$FRONTEND_PID ;;
        gclab_hot) URL=$UNDER_TEST KEYS=$HOT_KEYS PID=$FRONTEND_PID ;;
        nginx) URL=http://127.0.0.1:$NGINX_PORT KEYS=$OWN_KEYS PID=$NGINX_PID ;;
    esac
}

# The counters that say where the frontend's answers came from.
sources() { curl -fsS --max-time 5 "$UNDER_TEST/stats" | jq -c '{gets, main: .main_cache.hits, hot: .hot_cache.hits}'; }

if [[ -n ${PERF_DATA:-} ]]; then
    setup pinned
    workload gclab_own
    say "profiling frontend 18001 (perf record -F 999 -g) during one run of gclab_own"
    start perf timeout -s INT $((WRK_SECONDS + 20)) perf record -F 999 -g -o "$PERF_DATA" -p "$PID"
    perf_pid=$LAST_PID
    sleep 1
    run_wrk "$WRK_CPU" "$URL" "$KEYS" >/dev/null
    stop "$perf_pid" INT
    echo '{}'
    exit
fi

WORKLOADS=(gclab_own gclab_hot nginx)
for mode in $MODES; do
    setup "$mode"
    say "$mode: warm-up, ${WARMUP_SECONDS} s of each workload (not measured)"
    for w in "${WORKLOADS[@]}"; do
        workload "$w"
        run_wrk "$WRK_CPU" "$URL" "$KEYS" "$WARMUP_SECONDS" >/dev/null
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for w in "${WORKLOADS[@]}"; do
            workload "$w"
            wait_for_quiet
            before=$(sources) ticks=$(cpu_ticks "$PID")
            result=$(run_wrk "$WRK_CPU" "$URL" "$KEYS")
            ticks=$(($(cpu_ticks "$PID") - ticks)) after=$(sources)
            jqm -c -n --arg mode "$mode" --arg w "$w" --argjson round "$round" --argjson r "$result" \
                --argjson ticks "$ticks" --argjson hz "$CLK_TCK" --argjson a "$before" --argjson b "$after" 'include "lib";
                {mode: $mode, workload: $w, round: $round} + ($r | del(.p50_us, .p99_us, .max_us)) + {
                    p50_ms: ($r.p50_us / 1000), p99_ms: ($r.p99_us / 1000), max_ms: ($r.max_us / 1000),
                    cpu_us_per_req: ($ticks * 1e6 / $hz / $r.requests | round(2)),
                    # share of the frontend'\''s gets answered from the cache meant (nginx: none)
                    from_cache: (if $w == "nginx" then null else ($b.gets - $a.gets) as $g
                        | (if $w == "gclab_own" then $b.main - $a.main else $b.hot - $a.hot end) / ([$g, 1] | max) | round(4) end)
                }' >>"$WORK/runs.jsonl"
            tail -n1 "$WORK/runs.jsonl" | jq -r '"\(.mode) round \(.round) \(.workload): \(.rps | round) req/s · p50 \(.p50_ms) ms · p99 \(.p99_ms) ms · \(.cpu_us_per_req) µs CPU/req · errors \(.errors)" + (if .from_cache then " · from its cache \(.from_cache * 100)%" else "" end)' >&2
        done
    done
    stop_all
done

# Medians per mode and workload, ratios to nginx, and the targets of issue 10.
jqm -s --argjson rounds "$ROUNDS" --argjson keys "$HIT_KEYS" --arg wrk "$WRK_ARGS" \
    --argjson value_bytes $VALUE_BYTES --arg rust_log "$RUST_LOG" 'include "lib";
    def summary: {
        rps: (map(.rps) | median), p50_ms: (map(.p50_ms) | median), p99_ms: (map(.p99_ms) | median),
        cpu_us_per_req: (map(.cpu_us_per_req) | median), errors: (map(.errors) | add),
        from_cache_min: (map(.from_cache) | min), rounds: map(del(.mode, .workload))};
    def ratio(a; b): if b > 0 then a / b | round(3) else null end;
    (group_by(.mode) | map({key: .[0].mode, value: (group_by(.workload) | map({key: .[0].workload, value: summary}) | from_entries
        | .nginx as $n | map_values(. + {vs_nginx: {rps: ratio(.rps; $n.rps), p99_ms: ratio(.p99_ms; $n.p99_ms),
                                                    cpu_us_per_req: ratio(.cpu_us_per_req; $n.cpu_us_per_req)}}))})
        | from_entries) as $modes
    | {name: "hits",
       settings: {rounds: $rounds, wrk: $wrk, keys: $keys, value_bytes: $value_bytes, rust_log: $rust_log},
       modes: $modes,
       targets: [
         ($modes.pinned // empty | . as $m | ("gclab_own", "gclab_hot") as $w | $m[$w] |
            target("pinned, \($w): ≥ 1.05× nginx req/s, no errors"; "\(.rps | round) req/s = \(.vs_nginx.rps)× nginx"; .vs_nginx.rps >= 1.05 and .errors == 0),
            target("pinned, \($w): CPU per hit ≤ nginx’s"; "\(.cpu_us_per_req) µs vs \($m.nginx.cpu_us_per_req) µs"; .cpu_us_per_req <= $m.nginx.cpu_us_per_req)),
         ($modes.unpinned // empty | . as $m | ("gclab_own", "gclab_hot") as $w | $m[$w] |
            target("unpinned, \($w): ≥ 1.0× nginx req/s, no errors"; "\(.rps | round) req/s = \(.vs_nginx.rps)× nginx"; .vs_nginx.rps >= 1.0 and .errors == 0),
            target("unpinned, \($w): p99 ≤ 2× nginx’s"; "\(.p99_ms) ms vs \($m.nginx.p99_ms) ms"; .p99_ms <= 2 * $m.nginx.p99_ms))
       ]}' "$WORK/runs.jsonl"
