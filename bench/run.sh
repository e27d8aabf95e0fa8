#!/usr/bin/env bash
# bench/run.sh — measure groupcache-lab against its targets and write bench/RESULTS.md.
#
#   bash bench/run.sh
#
# What it measures, each in ROUNDS rounds (3), reporting the median:
#   a. cache hits through one frontend over HTTP: wrk asks 19001 for keys that 19001 owns,
#      so every answer comes from its main cache;
#   b. the same for keys another frontend owns (answered from 19001's hot cache or by its
#      owner over tarpc);
#   c. nginx serving a 30-byte file with the same wrk settings: the most this machine can
#      do, so (a) and (b) are read as a fraction of it. Rounds are interleaved (a, b, c,
#      a, b, c, ...) so a slow minute of the machine hurts all three alike;
#   d. the thundering herd: 1000 concurrent cgets of one cold key, `gclab cli herd`;
#   e. memory: a frontend's resident set (VmRSS) after it has cached 100,000 keys.
#
# Targets: (a) ≥ 0.9× nginx; herd: exactly 1 database read and p99 ≤ delay + 20 ms;
# RSS ≤ 40 MiB. When one is missed, the script profiles with perf and adds what it found.
#
# Everything runs on 127.0.0.1, on ports away from the lab's defaults (8001.., 9001..,
# 8080), so a lab you have running in other terminals is left alone. Every process the
# script starts is stopped by its pid when it exits, however it exits.
#
# Knobs (environment): ROUNDS=3 WRK_SECONDS=10 RSS_KEYS=100000 PROFILE=auto|always|never
#                      QUIET_WAIT=120 (seconds it may wait, in all, for other work to calm down)
#                      RETRIES=6 (runs it may repeat, per phase, because other work got in the way)
# Needs: cargo, wrk, nginx, curl (≥ 7.66, for --parallel), jq; perf for the profiles.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH="$ROOT/bench"

ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-10}
RSS_KEYS=${RSS_KEYS:-100000}
PROFILE=${PROFILE:-auto}

# The topology under test: a dbserver and three frontends. A frontend's HTTP port is its
# peer port + 1000, as in the lab.
DB=127.0.0.1:18080
PEER_PORTS=(18001 18002 18003)
HTTP_PORTS=(19001 19002 19003)
DELAY=300ms
DELAY_MS=300
PEERS=$(IFS=,; echo "${PEER_PORTS[*]}")
FRONTENDS=$(IFS=,; echo "${HTTP_PORTS[*]}")
UNDER_TEST=http://127.0.0.1:${HTTP_PORTS[0]}      # (a) and (b) go through this one
UNDER_TEST_NAME=127.0.0.1:${PEER_PORTS[0]}        # its name in the ring, as /owner says it

# The memory test gets its own dbserver (no delay: 100,000 cold reads at 300 ms each
# would take a while) and a frontend that is its own only peer, so it owns every key.
RSS_DB=127.0.0.1:18081
RSS_PEER_PORT=18011
RSS_HTTP=http://127.0.0.1:19011

NGINX_PORT=18090

# Targets.
TARGET_RATIO=0.9
TARGET_HERD_P99_MS=$((DELAY_MS + 20))
TARGET_RSS_MIB=40

WRK_ARGS=(-t2 -c32 "-d${WRK_SECONDS}s" --latency)

STARTED_AT=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
SECONDS=0

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in cargo wrk nginx curl jq; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool, or rustup for cargo)"
done

# ---------------------------------------------------------------------------------------
# Process bookkeeping. Every background process goes through `start`, which records its
# pid; `stop` ends one by pid; the EXIT trap stops whatever is still running. Nothing is
# ever killed by name, so a lab running in another terminal is never touched.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gclab-bench.XXXXXX")
declare -A RUNNING=()   # pid -> name, of everything started and not yet stopped
EVER=()                 # every pid started, and their children: checked at the end
LAST_PID=

# start NAME COMMAND...: runs COMMAND in the background, output to $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    RUNNING[$LAST_PID]=$name
    EVER+=("$LAST_PID")
}

# Whether a pid is a live process. A child that exited but was not yet waited for is a
# zombie: `kill -0` still succeeds on it, so look at its state instead.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }                 # drop "pid (comm) ": comm may contain spaces
    [[ ${stat%% *} != Z ]]
}

# stop PID [SIGNAL]: SIGTERM by default (every server here shuts down cleanly on it; perf
# wants SIGINT to write its data), then SIGKILL after 10 s. Its own children (nginx's
# workers, the perf under `timeout`) must be gone too once it is.
stop() {
    local pid=$1 signal=${2:-TERM} i child children
    children=$(pgrep -P "$pid" || true)
    EVER+=($children)
    kill -"$signal" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "warning: ${RUNNING[$pid]:-pid $pid} ignored SIG$signal for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true   # reap it, so its pid cannot be mistaken later
    for child in $children; do
        if alive "$child"; then
            echo "warning: pid $child, started by ${RUNNING[$pid]:-pid $pid}, outlived it; killing it" >&2
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
    unset "RUNNING[$pid]"
}

# still_running: how many of the processes ever started are alive.
still_running() {
    local pid n=0
    for pid in "${EVER[@]}"; do
        if alive "$pid"; then n=$((n + 1)); fi
    done
    echo "$n"
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${!RUNNING[@]}"; do
        stop "$pid"
    done
    (($(still_running) == 0)) || echo "warning: $(still_running) processes still running" >&2
    if ((status == 0)); then
        rm -rf "$WORK"
    else
        echo "run.sh failed; logs and data kept in $WORK" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port we want must be free: a clash would measure someone else's server.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in 18080 18081 "${PEER_PORTS[@]}" "${HTTP_PORTS[@]}" $RSS_PEER_PORT 19011 $NGINX_PORT; do
    ! port_taken "$port" || die "port $port on 127.0.0.1 is in use; stop what runs there, or edit the ports at the top of $0"
done

# wait_for URL PID: until URL answers 200, for at most 10 s, while PID is alive.
wait_for() {
    local url=$1 pid=$2 i
    for ((i = 0; i < 100; i++)); do
        curl -fs --max-time 1 -o /dev/null "$url" && return 0
        alive "$pid" || die "${RUNNING[$pid]} exited; see $WORK/${RUNNING[$pid]}.log"
        sleep 0.1
    done
    die "$url did not answer within 10 s; see $WORK/${RUNNING[$pid]}.log"
}

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Was the machine ours while we measured? Someone's `cargo test` in another terminal takes
# cores from the servers and the load generator alike, and the numbers lie. cpu_snapshot
# prints three clock-tick counters: user-space CPU time of the whole machine (plus steal:
# time the hypervisor gave to other guests), the machine's total, and the user-space CPU
# time of this script and everything it started (a finished child's time is added to its
# parent's; a running one is read directly, with its own children, like nginx's workers).
# others_pct BEFORE AFTER is the share of the machine that other programs used.
#
# Why user time only: the kernel work our own loopback traffic causes is partly charged to
# whatever the CPU was doing, idle included, so system time would count some of it as
# "someone else". A compiler next door shows up in user time, which is all we need.
cpu_snapshot() {
    local user nice system idle iowait irq softirq steal ours=0 pid stat
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    for pid in $$ "${!RUNNING[@]}" $(for pid in "${!RUNNING[@]}"; do pgrep -P "$pid"; done); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        set -- ${stat##*) }     # from field 3 (state) on: utime, field 14, is ${12}
        ours=$((ours + ${12} + ${14}))   # utime + cutime (children's, once waited for)
    done
    echo "$((user + nice + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal)) $ours"
}
others_pct() {
    local before=($1) after=($2)
    calc "100 * (${after[0]} - ${before[0]} - (${after[2]} - ${before[2]})) / (${after[1]} - ${before[1]} + 0.0001)" |
        xargs printf '%.0f'
}

# wait_for_quiet: measuring while a `cargo build` runs next door measures the build. Before
# each round, wait until other processes use at most 10% of the machine for 2 s, within
# a budget of QUIET_WAIT seconds (120) over the whole run, so it still ends in time. Once
# the budget is spent, runs are no longer repeated either: there is no quiet to wait for.
QUIET_WAIT=${QUIET_WAIT:-120}
RETRIES=${RETRIES:-6}
REPEATED_WRK=0
REPEATED_HERD=0
wait_for_quiet() {
    local before pct announced=
    while ((QUIET_WAIT > 0)); do
        before=$(cpu_snapshot)
        sleep 2
        pct=$(others_pct "$before" "$(cpu_snapshot)")
        ((pct > 10)) || return 0
        [[ -n $announced ]] || say "other processes use ${pct}% of the CPU; waiting for quiet (${QUIET_WAIT} s of waiting left)"
        announced=yes
        QUIET_WAIT=$((QUIET_WAIT - 2))
        ((QUIET_WAIT > 0)) || echo "    other processes still use ${pct}% of the CPU; no more waiting: measuring anyway" >&2
    done
}

# median N...: the middle value (the mean of the two middle ones for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPRESSION: floating-point arithmetic, which bash lacks.
# The parentheses matter: in awk, `printf x > y` would write to a file named y.
calc() { awk "BEGIN { printf \"%s\", ($1) }"; }
verdict() { if (($1)); then echo PASS; else echo MISS; fi; }

# ---------------------------------------------------------------------------------------
say "building (cargo build --release)"
(cd "$ROOT" && cargo build --release)
GCLAB="${CARGO_TARGET_DIR:-$ROOT/target}/release/gclab"
[[ -x $GCLAB ]] || die "cargo built no $GCLAB"

# Servers log one line per request at info level; that would measure the terminal.
export RUST_LOG=warn NO_COLOR=1

say "starting a dbserver on $DB (reads wait $DELAY) and frontends ${HTTP_PORTS[*]}"
start dbserver "$GCLAB" dbserver --addr "$DB" --data-dir "$WORK/db" --delay "$DELAY"
wait_for "http://$DB/stats" "$LAST_PID"
declare -A FRONTEND_PID=()
for port in "${PEER_PORTS[@]}"; do
    start "frontend-$port" "$GCLAB" frontend --port "$port" --peers "$PEERS" --db "$DB"
    FRONTEND_PID[$port]=$LAST_PID
done
for i in "${!PEER_PORTS[@]}"; do
    wait_for "http://127.0.0.1:${HTTP_PORTS[$i]}/stats" "${FRONTEND_PID[${PEER_PORTS[$i]}]}"
done

# Fill key1..key100 into the dbserver (30-byte values) and warm every cache: `cli bench`
# writes missing keys first, then reads; a second pass asks every frontend for every key,
# so no measured request waits for the database.
say "prefilling key1..key100 and warming the caches"
timeout 60 "$GCLAB" cli bench --keys 100 --duration 1s --frontends "$FRONTENDS" --db "$DB" \
    --json >"$WORK/prefill.json"
warm=$(timeout 60 curl --no-progress-meter --parallel --parallel-max 64 --max-time 10 \
    -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:{$FRONTENDS}/cache/key[1-100]" | sort | uniq -c)
[[ $(awk '$2 == 200 { print $1 }' <<<"$warm") == 300 ]] || die "warming: not every key answered 200: $warm"

# Which keys does the frontend under test own? Ask it: /owner answers from the same
# rendezvous ranking the Get path uses. curl's [1-100] globbing makes it one process.
curl --no-progress-meter --max-time 10 "$UNDER_TEST/owner/key[1-100]" >"$WORK/owners.json"
jq -r --arg me "$UNDER_TEST_NAME" 'select(.owner == $me) | .key' "$WORK/owners.json" >"$WORK/local-keys.txt"
jq -r --arg me "$UNDER_TEST_NAME" 'select(.owner != $me) | .key' "$WORK/owners.json" >"$WORK/remote-keys.txt"
LOCAL_KEYS=$(wc -l <"$WORK/local-keys.txt")
REMOTE_KEYS=$(wc -l <"$WORK/remote-keys.txt")
((LOCAL_KEYS > 0 && REMOTE_KEYS > 0)) || die "expected 19001 to own some of key1..key100 and not others"

# nginx, with every path in $WORK. Its workers run as an unprivileged user when nginx is
# started as root, so the directory it serves from must be readable by others, and $WORK
# (which mktemp makes private) must let them pass through.
say "starting nginx on 127.0.0.1:$NGINX_PORT"
NGINX_DIR="$WORK/nginx"
mkdir -p "$NGINX_DIR/www" "$NGINX_DIR/tmp"
printf '%-30s' 'value of key1' >"$NGINX_DIR/www/value"   # 30 bytes, like gclab's keyN values
sed -e "s|@DIR@|$NGINX_DIR|g" -e "s|@PORT@|$NGINX_PORT|g" "$BENCH/nginx.conf.template" >"$NGINX_DIR/nginx.conf"
chmod a+x "$WORK"
chmod -R a+rX "$NGINX_DIR"
start nginx nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf"
NGINX_PID=$LAST_PID
wait_for "http://127.0.0.1:$NGINX_PORT/cache/key1" "$NGINX_PID"

# run_wrk NAME URL KEYFILE: one wrk run; prints its RESULT line (see random-key.lua).
run_wrk() {
    local out="$WORK/wrk-$1.txt"
    timeout $((WRK_SECONDS + 30)) wrk "${WRK_ARGS[@]}" -s "$BENCH/random-key.lua" "$2" -- "$3" >"$out"
    grep '^RESULT ' "$out" || die "wrk printed no RESULT line; see $out"
}
# field LINE NAME: the value of NAME=value in a RESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# stats_of URL: the counters that say where answers came from.
stats_of() {
    curl -fsS --max-time 5 "$1/stats" |
        jq -c '{gets, cache_hits, main: .main_cache.hits, hot: .hot_cache.hits, peer_loads, local_loads}'
}
# sources BEFORE AFTER: "main 100.0% · hot 0.0% · peer 0.0% · db 0.0%" of the gets between.
sources() {
    jq -rn --argjson a "$1" --argjson b "$2" '
        ($b.gets - $a.gets) as $g | def pct(x): (if $g > 0 then x * 1000 / $g | round / 10 else 0 end | tostring) + "%";
        "main \(pct($b.main - $a.main)) · hot \(pct($b.hot - $a.hot)) · peer \(pct($b.peer_loads - $a.peer_loads)) · db \(pct($b.local_loads - $a.local_loads))"'
}

# Warm-up runs, not measured: the first seconds of a run fill the hot cache with remote
# keys (1 in 10 peer answers is kept), and let every server settle on its connections.
say "warm-up: 3 s of each workload"
warm_up() { timeout 60 wrk -t2 -c32 -d3s -s "$BENCH/random-key.lua" "$1" -- "$2" >/dev/null; }
warm_up "$UNDER_TEST" "$WORK/local-keys.txt"
warm_up "$UNDER_TEST" "$WORK/remote-keys.txt"
warm_up "http://127.0.0.1:$NGINX_PORT" "$WORK/local-keys.txt"

declare -A RPS=() P50=() P99=() ERR=() SRC=() OTHERS=()
for ((round = 1; round <= ROUNDS; round++)); do
    wait_for_quiet
    for workload in local remote nginx; do
        case $workload in
            local) url=$UNDER_TEST keys="$WORK/local-keys.txt" ;;
            remote) url=$UNDER_TEST keys="$WORK/remote-keys.txt" ;;
            nginx) url="http://127.0.0.1:$NGINX_PORT" keys="$WORK/local-keys.txt" ;;
        esac
        say "round $round/$ROUNDS: $workload (wrk ${WRK_ARGS[*]} $url)"
        # A run that other work got in the way of is repeated, within the RETRIES budget.
        while :; do
            [[ $workload == nginx ]] || before=$(stats_of "$url")
            cpu_before=$(cpu_snapshot)
            line=$(run_wrk "$workload-$round" "$url" "$keys")
            OTHERS[$workload,$round]=$(others_pct "$cpu_before" "$(cpu_snapshot)")
            others=${OTHERS[$workload,$round]}
            ((others > 10 && REPEATED_WRK < RETRIES && QUIET_WAIT > 0)) || break
            echo "    $(field "$line" rps) req/s, but other processes used ${OTHERS[$workload,$round]}% of the CPU; repeating the run" >&2
            REPEATED_WRK=$((REPEATED_WRK + 1))
            wait_for_quiet
        done
        [[ $workload == nginx ]] || SRC[$workload,$round]=$(sources "$before" "$(stats_of "$url")")
        RPS[$workload,$round]=$(field "$line" rps)
        P50[$workload,$round]=$(calc "$(field "$line" p50_us) / 1000")
        P99[$workload,$round]=$(calc "$(field "$line" p99_us) / 1000")
        ERR[$workload,$round]=$(field "$line" errors)
        echo "    ${RPS[$workload,$round]} req/s · p50 ${P50[$workload,$round]} ms · p99 ${P99[$workload,$round]} ms · errors ${ERR[$workload,$round]} ${SRC[$workload,$round]:+· ${SRC[$workload,$round]} }· others used ${OTHERS[$workload,$round]}% of the CPU" >&2
    done
done

# median_of TABLE WORKLOAD: the median of TABLE[WORKLOAD,1..ROUNDS].
median_of() {
    local -n table=$1
    local values=() r
    for ((r = 1; r <= ROUNDS; r++)); do values+=("${table[$2,$r]}"); done
    median "${values[@]}"
}

declare -A MED_RPS=() MED_P50=() MED_P99=()
for workload in local remote nginx; do
    MED_RPS[$workload]=$(median_of RPS $workload)
    MED_P50[$workload]=$(median_of P50 $workload)
    MED_P99[$workload]=$(median_of P99 $workload)
done
RATIO_LOCAL=$(calc "${MED_RPS[local]} / ${MED_RPS[nginx]}")
RATIO_REMOTE=$(calc "${MED_RPS[remote]} / ${MED_RPS[nginx]}")
errors_total=0
for key in "${!ERR[@]}"; do errors_total=$((errors_total + ${ERR[$key]})); done
PASS_LOCAL=$(verdict "$(calc "$RATIO_LOCAL >= $TARGET_RATIO && $errors_total == 0")")
PASS_REMOTE=$(verdict "$(calc "$RATIO_REMOTE >= $TARGET_RATIO && $errors_total == 0")")

# ---------------------------------------------------------------------------------------
# d. The herd. Each run writes a fresh key, so each starts cold.
declare -a HERD_READS=() HERD_MIN=() HERD_P50=() HERD_P99=() HERD_MAX=() HERD_ERRORS=() HERD_OTHERS=()
for ((round = 1; round <= ROUNDS; round++)); do
    wait_for_quiet
    say "round $round/$ROUNDS: herd of 1000 (gclab cli herd --requests 1000)"
    while :; do
        cpu_before=$(cpu_snapshot)
        timeout 120 "$GCLAB" cli herd --requests 1000 --frontends "$FRONTENDS" --db "$DB" --json \
            >"$WORK/herd-$round.json" || true   # its exit code says "some failed"; counted below
        others=$(others_pct "$cpu_before" "$(cpu_snapshot)")
        ((others > 10 && REPEATED_HERD < RETRIES && QUIET_WAIT > 0)) || break
        echo "    p99 $(jq .latency_ms.p99 "$WORK/herd-$round.json") ms, but other processes used $others% of the CPU; repeating the herd" >&2
        REPEATED_HERD=$((REPEATED_HERD + 1))
        wait_for_quiet
    done
    HERD_OTHERS+=("$others")
    jq -e .db_reads "$WORK/herd-$round.json" >/dev/null || die "herd failed: $(cat "$WORK/herd-$round.json")"
    HERD_READS+=("$(jq .db_reads "$WORK/herd-$round.json")")
    HERD_MIN+=("$(jq .latency_ms.min "$WORK/herd-$round.json")")
    HERD_P50+=("$(jq .latency_ms.p50 "$WORK/herd-$round.json")")
    HERD_P99+=("$(jq .latency_ms.p99 "$WORK/herd-$round.json")")
    HERD_MAX+=("$(jq .latency_ms.max "$WORK/herd-$round.json")")
    HERD_ERRORS+=("$(jq '.errors + .wrong_values + .not_found' "$WORK/herd-$round.json")")
    echo "    db reads ${HERD_READS[-1]} · p99 ${HERD_P99[-1]} ms · failed ${HERD_ERRORS[-1]} · others used ${HERD_OTHERS[-1]}% of the CPU" >&2
done
MED_HERD_READS=$(median "${HERD_READS[@]}")
MED_HERD_P99=$(median "${HERD_P99[@]}")
all_one=1
for i in "${!HERD_READS[@]}"; do
    ((HERD_READS[i] == 1 && HERD_ERRORS[i] == 0)) || all_one=0
done
PASS_HERD_READS=$(verdict "$all_one")
PASS_HERD_P99=$(verdict "$(calc "$MED_HERD_P99 <= $TARGET_HERD_P99_MS")")

# ---------------------------------------------------------------------------------------
# If a throughput target was missed, look at where the frontend spends its CPU while wrk
# runs (a) once more: perf samples its stacks 999 times a second.
want_profile() { [[ $PROFILE == always || ($PROFILE == auto && $1 == MISS) ]] && command -v perf >/dev/null; }
CPU_PROFILE=
if want_profile "$([[ $PASS_LOCAL == PASS && $PASS_REMOTE == PASS ]] && echo PASS || echo MISS)"; then
    wait_for_quiet
    say "profiling frontend ${PEER_PORTS[0]} (perf record) during one more run of (a)"
    start perf-cpu timeout -s INT $((WRK_SECONDS + 20)) perf record -F 999 -g \
        -o "$WORK/cpu.data" -p "${FRONTEND_PID[${PEER_PORTS[0]}]}"
    perf_pid=$LAST_PID
    sleep 1
    run_wrk profiled "$UNDER_TEST" "$WORK/local-keys.txt" >/dev/null
    stop "$perf_pid" INT
    # Flat profile: where the samples landed, by function.
    perf report -i "$WORK/cpu.data" --stdio --no-children --sort dso,symbol -g none \
        --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' |
        cut -c1-160 | head -40 >"$WORK/cpu-top.txt" || true
    # The same samples grouped by what they are, by name patterns on the symbol.
    perf report -i "$WORK/cpu.data" --stdio --no-children --sort dso,symbol -g none \
        --percent-limit 0 2>/dev/null | grep -v '^#' | awk -f "$BENCH/cpu-groups.awk" >"$WORK/cpu-groups.txt" || true
    CPU_PROFILE=yes
fi

# If the herd's p99 was missed, profile the whole machine (-a) during one more herd: with
# 1000 connections opened at once on few cores, the question is first *who* had the CPU
# (the cli generating the load, the frontends, or someone else), then what they did.
HERD_PROFILE=
if want_profile "$PASS_HERD_P99"; then
    wait_for_quiet
    say "profiling the whole machine (perf record -a) during one more herd"
    timeout 120 perf record -F 4999 -a -g -o "$WORK/herd.data" -- \
        "$GCLAB" cli herd --requests 1000 --frontends "$FRONTENDS" --db "$DB" --json \
        >"$WORK/herd-profiled.json" 2>"$WORK/perf-herd.log" || true
    ours=$(for pid in "${!RUNNING[@]}"; do printf '%s=%s ' "$pid" "${RUNNING[$pid]}"; done)
    # `perf script -F comm,pid` prints "comm pid" per sample, comm being the thread's name:
    # the cli is the process not started by us that has a thread called "gclab".
    perf script -i "$WORK/herd.data" -F comm,pid 2>/dev/null | awk -v ours="$ours" '
        BEGIN { n = split(ours, pairs, " "); for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); name[kv[1]] = kv[2] } }
        { pid = $NF; samples[pid]++; total++
          if ($1 == "gclab") cli[pid] = 1
          if (!(pid in comm)) comm[pid] = $1 }
        END {
          for (pid in samples) {
              if (pid in name) who = name[pid]
              else if (pid in cli) who = "gclab cli herd (the load generator)"
              else if (pid == 0) who = "idle"
              else who = "other: " comm[pid] " (pid " pid ")"
              count[who] += samples[pid]
          }
          for (w in count) printf "%5.1f%%  %s\n", 100 * count[w] / total, w | "sort -rn"
        }' |
        head -12 >"$WORK/herd-by-process.txt" || true
    frontend_pids=$(IFS=,; echo "${FRONTEND_PID[*]}")
    perf report -i "$WORK/herd.data" --pid "$frontend_pids" --percentage relative --stdio --no-children \
        --sort dso,symbol -g none --percent-limit 0 2>/dev/null | grep -v '^#' |
        awk -f "$BENCH/cpu-groups.awk" | head -12 >"$WORK/herd-frontend-groups.txt" || true
    HERD_PROFILED_P99=$(jq .latency_ms.p99 "$WORK/herd-profiled.json" 2>/dev/null || echo "?")
    HERD_PROFILE=yes
fi

say "stopping the topology and nginx"
for pid in "${!RUNNING[@]}"; do stop "$pid"; done

# ---------------------------------------------------------------------------------------
# e. Memory. Write RSS_KEYS keys of 100-byte values to a delay-free dbserver, then, in each
# round, start a fresh frontend, read every key through it once, and read its VmRSS.
#
# One `gclab cli set` per key would start 100,000 processes. Instead one curl process
# runs them all, 64 at a time (--parallel), from a config file with one entry per key.
say "memory: writing $RSS_KEYS keys with 100-byte values to a dbserver on $RSS_DB"
start dbserver-rss "$GCLAB" dbserver --addr "$RSS_DB" --data-dir "$WORK/db-rss" --delay 0ms
wait_for "http://$RSS_DB/stats" "$LAST_PID"
# A PUT per key: `next` separates one request's options from the next one's.
awk -v n="$RSS_KEYS" -v db="$RSS_DB" 'BEGIN {
    for (i = 1; i <= n; i++) {
        if (i > 1) print "next"
        printf "url = \"http://%s/kv/rsskey%d\"\nrequest = \"PUT\"\n", db, i
        printf "data-binary = \"%-100s\"\n", "value of rsskey" i       # 100 bytes
        printf "output = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n"
    } }' >"$WORK/put.cfg"
# A GET per key: url/output pairs.
awk -v n="$RSS_KEYS" -v fe="$RSS_HTTP" 'BEGIN {
    for (i = 1; i <= n; i++) printf "url = \"%s/cache/rsskey%d\"\noutput = \"/dev/null\"\n", fe, i
    }' >"$WORK/get.cfg"
PUT_START=$SECONDS
puts=$(timeout 600 curl --no-progress-meter --parallel --parallel-max 64 --max-time 30 \
    --config "$WORK/put.cfg" 2>"$WORK/curl-put.log" | sort | uniq -c)
PUT_SECONDS=$((SECONDS - PUT_START))
[[ $(awk '$2 == 204 { print $1 }' <<<"$puts") == "$RSS_KEYS" ]] || die "writing the keys: not every PUT answered 204: $puts"

# fill_frontend: reads every key once through the RSS frontend; dies unless all are 200.
fill_frontend() {
    local gets
    gets=$(timeout 600 curl --no-progress-meter --parallel --parallel-max 64 --max-time 30 \
        -w '%{http_code}\n' --config "$WORK/get.cfg" 2>"$WORK/curl-get.log" | sort | uniq -c)
    [[ $(awk '$2 == 200 { print $1 }' <<<"$gets") == "$RSS_KEYS" ]] || die "reading the keys: not every GET answered 200: $gets"
}

declare -a RSS_IDLE=() RSS_FULL=() RSS_ITEMS=() RSS_CACHE_BYTES=()
for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round/$ROUNDS: memory after caching $RSS_KEYS keys"
    start frontend-rss "$GCLAB" frontend --port $RSS_PEER_PORT --peers $RSS_PEER_PORT --db "$RSS_DB"
    pid=$LAST_PID
    wait_for "$RSS_HTTP/stats" "$pid"
    RSS_IDLE+=("$(vmrss_kib "$pid")")
    fill_frontend
    RSS_FULL+=("$(vmrss_kib "$pid")")
    stats=$(curl -fsS --max-time 5 "$RSS_HTTP/stats")
    RSS_ITEMS+=("$(jq .main_cache.items <<<"$stats")")
    RSS_CACHE_BYTES+=("$(jq .main_cache.bytes <<<"$stats")")
    echo "    VmRSS $((RSS_IDLE[-1] / 1024)) MiB at start, $((RSS_FULL[-1] / 1024)) MiB with ${RSS_ITEMS[-1]} keys cached (${RSS_CACHE_BYTES[-1]} bytes of keys + values)" >&2
    stop "$pid"
done
MED_RSS_KIB=$(median "${RSS_FULL[@]}")
MED_RSS_MIB=$(calc "$MED_RSS_KIB / 1024")
MED_IDLE_MIB=$(calc "$(median "${RSS_IDLE[@]}") / 1024")
PER_KEY_BYTES=$(calc "($MED_RSS_KIB - $(median "${RSS_IDLE[@]}")) * 1024 / $RSS_KEYS")
PASS_RSS=$(verdict "$(calc "$MED_RSS_KIB <= $TARGET_RSS_MIB * 1024")")

# If memory was missed, find who allocated it: perf samples page faults (the moment a
# fresh page of heap is first touched) with their call stacks, while a fresh frontend
# caches a tenth of the keys; bench/fault-sites.awk names the caller behind malloc.
MEM_PROFILE=
if want_profile "$PASS_RSS"; then
    say "profiling page faults of a fresh frontend while it caches $((RSS_KEYS / 10)) keys"
    start frontend-rss "$GCLAB" frontend --port $RSS_PEER_PORT --peers $RSS_PEER_PORT --db "$RSS_DB"
    pid=$LAST_PID
    wait_for "$RSS_HTTP/stats" "$pid"
    start perf-faults timeout -s INT 120 perf record -e page-faults -c 10 --call-graph dwarf,8192 \
        -o "$WORK/faults.data" -p "$pid"
    perf_pid=$LAST_PID
    sleep 1
    head -n $((RSS_KEYS / 10 * 2)) "$WORK/get.cfg" >"$WORK/get-tenth.cfg"
    timeout 120 curl --no-progress-meter --parallel --parallel-max 64 --max-time 30 \
        --config "$WORK/get-tenth.cfg" 2>/dev/null
    stop "$perf_pid" INT
    stop "$pid"
    perf script -i "$WORK/faults.data" -F period,ip,sym 2>/dev/null |
        awk -f "$BENCH/fault-sites.awk" | cut -c1-200 | head -12 >"$WORK/fault-sites.txt" || true
    MEM_PROFILE=yes
fi

for pid in "${!RUNNING[@]}"; do stop "$pid"; done
LEFT_RUNNING=$(still_running)
((LEFT_RUNNING == 0)) || die "$LEFT_RUNNING of the processes this script started are still running"

# ---------------------------------------------------------------------------------------
say "writing $BENCH/RESULTS.md"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ $COMMIT != unknown ]] && ! git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null; then
    COMMIT="$COMMIT (with uncommitted changes)"
fi
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEM_TOTAL=$(free -h | awk '/^Mem:/ { print $2 }')

# row NAME VALUES...: a markdown table row.
row() { local IFS='|'; echo "| $* |"; }
rounds_header() {
    local cells=("$1") r
    for ((r = 1; r <= ROUNDS; r++)); do cells+=("round $r"); done
    cells+=("median")
    row "${cells[@]}"
    printf '|%s\n' "$(printf -- '---|%.0s' "${cells[@]}")"
}
# wrk_row LABEL TABLE WORKLOAD MEDIAN: TABLE[WORKLOAD,round] for each round, then MEDIAN.
wrk_row() {
    local -n table=$2
    local workload=$3 median=$4 cells=("$1") r
    for ((r = 1; r <= ROUNDS; r++)); do cells+=("${table[$workload,$r]}"); done
    cells+=("**$median**")
    row "${cells[@]}"
}
# list_row LABEL MEDIAN VALUES...: one value per round, then MEDIAN.
list_row() {
    local label=$1 median=$2 cells=("$1")
    shift 2
    cells+=("$@" "**$median**")
    row "${cells[@]}"
}

{
    cat <<EOF
# Benchmark results

Written by \`bench/run.sh\` — run it again with \`bash bench/run.sh\` (3–4 minutes on a quiet
machine, up to about 7 when it has to wait for other work to finish).

- **Date:** $STARTED_AT
- **Machine:** $(nproc) cores, $CPU_MODEL, $MEM_TOTAL RAM, Linux $(uname -r)
- **gclab commit:** $COMMIT
- **Run time:** $((SECONDS / 60)) min $((SECONDS % 60)) s; ${#EVER[@]} processes started in the
  background (servers, nginx and its workers, perf), all stopped by pid: $LEFT_RUNNING left running

Every figure below is the median of $ROUNDS rounds. wrk, the servers and the load all
share this machine's $(nproc) cores, so read throughput against nginx on the same machine,
not as an absolute.

## Summary

| target | measured (median) | verdict |
|---|---|---|
| cache hits (a), own keys: ≥ $TARGET_RATIO× nginx | $(printf '%.0f' "${MED_RPS[local]}") req/s = $(printf '%.2f' "$RATIO_LOCAL")× nginx ($(printf '%.0f' "${MED_RPS[nginx]}") req/s) | **$PASS_LOCAL** |
| cache hits (b), other nodes' keys: ≥ $TARGET_RATIO× nginx | $(printf '%.0f' "${MED_RPS[remote]}") req/s = $(printf '%.2f' "$RATIO_REMOTE")× nginx | **$PASS_REMOTE** |
| herd of 1000: exactly 1 database read (every round) | ${HERD_READS[*]} | **$PASS_HERD_READS** |
| herd of 1000: p99 ≤ $TARGET_HERD_P99_MS ms (delay $DELAY + 20 ms) | $MED_HERD_P99 ms | **$PASS_HERD_P99** |
| frontend RSS with $RSS_KEYS keys of 100 bytes: ≤ $TARGET_RSS_MIB MiB | $(printf '%.1f' "$MED_RSS_MIB") MiB | **$PASS_RSS** |

While wrk and the herd ran, processes other than this benchmark's used at most
$(printf '%s\n' "${OTHERS[@]}" "${HERD_OTHERS[@]}" | sort -n | tail -1)% of the machine's CPU (median $(median "${OTHERS[@]}" "${HERD_OTHERS[@]}")%): $(
        if (($(printf '%s\n' "${OTHERS[@]}" "${HERD_OTHERS[@]}" | sort -n | tail -1) > 10)); then
            echo "**the machine was shared** during some runs (see the \"CPU used by others\" rows), so those figures are low"
        else
            echo "the machine was ours"
        fi). Runs during which others used more than 10% were repeated: $REPEATED_WRK wrk runs and
$REPEATED_HERD herds (at most $RETRIES of each).

## The set-up

A dbserver on \`$DB\` (reads wait $DELAY, data in a temp dir) and three frontends, peer
ports ${PEER_PORTS[*]}, HTTP ports ${HTTP_PORTS[*]}, all with \`RUST_LOG=warn\`:

\`\`\`sh
gclab dbserver --addr $DB --data-dir \$TMP/db --delay $DELAY
gclab frontend --port ${PEER_PORTS[0]} --peers $PEERS --db $DB      # and ${PEER_PORTS[1]}, ${PEER_PORTS[2]}
gclab cli bench --keys 100 --duration 1s --frontends $FRONTENDS --db $DB --json   # fills key1..key100
curl --parallel "http://127.0.0.1:{$FRONTENDS}/cache/key[1-100]"                  # warms every cache
curl "$UNDER_TEST/owner/key[1-100]"   # splits the keys: $LOCAL_KEYS owned by $UNDER_TEST_NAME, $REMOTE_KEYS by the others
\`\`\`

nginx $(nginx -v 2>&1 | sed 's|.*/||') serves a 30-byte file for every path, from
\`bench/nginx.conf.template\` (\`worker_processes auto\`, access log off).

## Cache-hit throughput, one frontend over HTTP

\`\`\`sh
wrk ${WRK_ARGS[*]} -s bench/random-key.lua $UNDER_TEST -- local-keys.txt    # (a) $LOCAL_KEYS keys 19001 owns
wrk ${WRK_ARGS[*]} -s bench/random-key.lua $UNDER_TEST -- remote-keys.txt   # (b) $REMOTE_KEYS keys others own
wrk ${WRK_ARGS[*]} -s bench/random-key.lua http://127.0.0.1:$NGINX_PORT -- local-keys.txt   # (c) nginx
\`\`\`

After a 3-second unmeasured warm-up of each, rounds ran interleaved: (a), (b), (c), (a), …

Requests per second:

$(rounds_header workload)
$(wrk_row "(a) gclab, own keys" RPS local "${MED_RPS[local]}")
$(wrk_row "(b) gclab, others' keys" RPS remote "${MED_RPS[remote]}")
$(wrk_row "(c) nginx, static file" RPS nginx "${MED_RPS[nginx]}")

Latency p50 / p99, ms:

$(rounds_header workload)
$(for w in local remote nginx; do
        cells=("$w")
        for ((r = 1; r <= ROUNDS; r++)); do cells+=("${P50[$w,$r]} / ${P99[$w,$r]}"); done
        cells+=("**${MED_P50[$w]} / ${MED_P99[$w]}**")
        row "${cells[@]}"
    done)

Share of the machine's CPU used by processes other than this benchmark's (or taken by the
hypervisor) during each run, %:

$(rounds_header workload)
$(wrk_row "(a)" OTHERS local "$(median_of OTHERS local)")
$(wrk_row "(b)" OTHERS remote "$(median_of OTHERS remote)")
$(wrk_row "(c)" OTHERS nginx "$(median_of OTHERS nginx)")

- gclab / nginx, median throughput: (a) **$(printf '%.2f' "$RATIO_LOCAL")×**, (b) **$(printf '%.2f' "$RATIO_REMOTE")×**
- Errors (connect, read, write, timeout, non-2xx), all runs: $errors_total
- Where 19001's answers came from (its /stats before and after each run):
$(for w in local remote; do
        for ((r = 1; r <= ROUNDS; r++)); do echo "  - ($([[ $w == local ]] && echo a || echo b)) round $r: ${SRC[$w,$r]}"; done
    done)

## Thundering herd

\`\`\`sh
gclab cli herd --requests 1000 --frontends $FRONTENDS --db $DB --json
\`\`\`

Each round writes a fresh key and fires 1000 cgets of it at once, round-robin over the
three frontends. Database reads are the dbserver's own \`gets\` counter, after − before.
Latency is measured by the cli, from just before a request leaves (so it includes opening
one of its 1000 TCP connections) to the end of its answer.

$(rounds_header measure)
$(list_row "database reads" "$MED_HERD_READS" "${HERD_READS[@]}")
$(list_row "min latency, ms" "$(median "${HERD_MIN[@]}")" "${HERD_MIN[@]}")
$(list_row "p50 latency, ms" "$(median "${HERD_P50[@]}")" "${HERD_P50[@]}")
$(list_row "p99 latency, ms" "$MED_HERD_P99" "${HERD_P99[@]}")
$(list_row "max latency, ms" "$(median "${HERD_MAX[@]}")" "${HERD_MAX[@]}")
$(list_row "failed requests" "$(median "${HERD_ERRORS[@]}")" "${HERD_ERRORS[@]}")
$(list_row "CPU used by others, %" "$(median "${HERD_OTHERS[@]}")" "${HERD_OTHERS[@]}")

A minimum below the $DELAY delay means a request left the cli late: all 1000 are created at
once, but the cli sends them one after another, and a late one joins a load already under way.

## Memory with $RSS_KEYS keys cached

A separate dbserver (\`$RSS_DB\`, \`--delay 0ms\`) holds rsskey1..rsskey$RSS_KEYS, 100-byte
values, written by one curl process in $PUT_SECONDS s. Each round starts a fresh frontend
that is its own only peer, reads every key through it once, and reads its VmRSS:

\`\`\`sh
gclab dbserver --addr $RSS_DB --data-dir \$TMP/db-rss --delay 0ms
curl --parallel --parallel-max 64 --config put.cfg     # PUT /kv/rsskeyN, one entry per key
gclab frontend --port $RSS_PEER_PORT --peers $RSS_PEER_PORT --db $RSS_DB
curl --parallel --parallel-max 64 --config get.cfg     # GET /cache/rsskeyN on ${RSS_HTTP#http://}
grep VmRSS /proc/\$FRONTEND_PID/status
\`\`\`

$(rounds_header measure)
$(list_row "VmRSS at start, KiB" "$(median "${RSS_IDLE[@]}")" "${RSS_IDLE[@]}")
$(list_row "VmRSS with $RSS_KEYS keys, KiB" "$MED_RSS_KIB" "${RSS_FULL[@]}")
$(list_row "main cache items" "$(median "${RSS_ITEMS[@]}")" "${RSS_ITEMS[@]}")
$(list_row "main cache bytes (keys + values)" "$(median "${RSS_CACHE_BYTES[@]}")" "${RSS_CACHE_BYTES[@]}")

Median: $(printf '%.1f' "$MED_RSS_MIB") MiB resident ($(printf '%.1f' "$MED_IDLE_MIB") MiB of it before the first key), about
$(printf '%.0f' "$PER_KEY_BYTES") bytes per cached key for $(calc "${RSS_CACHE_BYTES[0]} / $RSS_KEYS" | xargs printf '%.0f') bytes of key and value.
EOF

    if [[ -n $CPU_PROFILE || -n $MEM_PROFILE || -n $HERD_PROFILE ]]; then
        echo
        echo "## Profiles (taken automatically because a target was missed)"
    fi
    if [[ -n $CPU_PROFILE ]]; then
        cat <<EOF

### CPU of frontend ${PEER_PORTS[0]} during (a)

\`perf record -F 999 -g -p <pid>\` for one more ${WRK_SECONDS}-second run of (a), then
\`perf report --stdio --no-children --sort dso,symbol\`. By group (\`bench/cpu-groups.awk\`
sorts symbols by name):

\`\`\`
$(cat "$WORK/cpu-groups.txt")
\`\`\`

Top symbols:

\`\`\`
$(cat "$WORK/cpu-top.txt")
\`\`\`
EOF
    fi
    if [[ -n $HERD_PROFILE ]]; then
        cat <<EOF

### The whole machine during one more herd (its p99: $HERD_PROFILED_P99 ms)

\`perf record -F 4999 -a -g -- gclab cli herd --requests 1000 ...\`. Who had the CPU, by
process (samples of both cores):

\`\`\`
$(cat "$WORK/herd-by-process.txt")
\`\`\`

What the three frontends did with their share (\`bench/cpu-groups.awk\`):

\`\`\`
$(cat "$WORK/herd-frontend-groups.txt")
\`\`\`
EOF
    fi
    if [[ -n $MEM_PROFILE ]]; then
        cat <<EOF

### Who touched new memory while a fresh frontend cached $((RSS_KEYS / 10)) keys

\`perf record -e page-faults -c 10 --call-graph dwarf -p <pid>\`: a page fault is the first
touch of a fresh page, so the stacks show who made the heap grow. \`bench/fault-sites.awk\`
names, for each sample, the first caller above the allocator (malloc, \`alloc::\`,
\`bytes::\`):

\`\`\`
$(cat "$WORK/fault-sites.txt")
\`\`\`
EOF
    fi
} >"$BENCH/RESULTS.md"

say "done in $((SECONDS / 60)) min $((SECONDS % 60)) s: $BENCH/RESULTS.md"
printf '  (a) %s  (b) %s  herd reads %s  herd p99 %s  RSS %s\n' \
    "$PASS_LOCAL" "$PASS_REMOTE" "$PASS_HERD_READS" "$PASS_HERD_P99" "$PASS_RSS" >&2
