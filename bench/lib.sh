# bench/lib.sh — what every bench script shares. A script sources it first:
#
#   source "$(dirname "$0")/lib.sh"
#
# The contract of a measurement script (hits.sh, rss.sh, herd.sh, cli-time.sh):
#   - `bash bench/NAME.sh` measures, prints progress on stderr and ONE JSON object on
#     stdout: {"name": ..., "settings": {...}, <its figures>, "targets": [...]}, where each
#     target is {"what": "...", "measured": "...", "pass": true|false} (or none: []);
#   - `bash bench/NAME.sh --render < NAME.json` prints its part of RESULTS.md from that JSON.
# bench/all.sh runs each, merges the objects into bench/results.json (under their names,
# with every script's targets lifted into one top-level list) and renders RESULTS.md from
# it, so a new measurement is a new script plus its name in all.sh's list.
#
# Every background process goes through `start` and is stopped by its pid when the script
# exits, however it exits. Nothing is killed by name, so a lab running in another terminal
# is never touched.

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
ROUNDS=${ROUNDS:-3}
WRK_SECONDS=${WRK_SECONDS:-10}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }   # stderr: stdout is for the JSON
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need TOOL[:DEBIAN_PACKAGE]...: fail before starting anything, saying what to install.
need() {
    local spec missing=()
    for spec; do
        command -v "${spec%%:*}" >/dev/null || missing+=("${spec%%:*} (apt-get install ${spec#*:})")
    done
    ((${#missing[@]} == 0)) || die "$(basename "$0") needs: ${missing[*]}"
}

# begin: what a measurement needs before it starts processes: a work dir, the cleanup trap,
# the binary. (Not done at `source` time, so `--render` stays a pure JSON-to-text filter.)
begin() {
    need jq curl
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gclab-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    # GCLAB=path measures that binary; all.sh builds once and passes it on like this.
    if [[ -z ${GCLAB:-} ]]; then
        need cargo
        say "building (cargo build --release)"
        (cd "$ROOT" && cargo build --release --quiet) >&2
        GCLAB=${CARGO_TARGET_DIR:-$ROOT/target}/release/gclab
    fi
    [[ -x $GCLAB ]] || die "no gclab binary at $GCLAB"
    export GCLAB
    # The figures are for warn: at info a server logs a line per request, and that would
    # measure the terminal.
    export RUST_LOG=${RUST_LOG:-warn} NO_COLOR=1
}

# ---------------------------------------------------------------------------------------
# Processes.

declare -A RUNNING=()   # pid -> name, of everything started and not yet stopped
EVER=()                 # every pid started, and their children: checked at exit
LAST_PID=

# start [--cpu CPUS] NAME COMMAND...: COMMAND in the background, output in $WORK/NAME.log.
# --cpu pins it with taskset (empty: not pinned); taskset execs COMMAND, so the pid is the
# server's own and its threads and children (nginx's workers) inherit the pinning.
start() {
    local cpu=
    if [[ $1 == --cpu ]]; then cpu=$2; shift 2; fi
    local name=$1
    shift
    if [[ -n $cpu ]]; then
        taskset -c "$cpu" "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    else
        "$@" </dev/null >"$WORK/$name.log" 2>&1 &
    fi
    LAST_PID=$!
    RUNNING[$LAST_PID]=$name
    EVER+=("$LAST_PID")
}

# on_cpu CPUS COMMAND...: COMMAND in the foreground, pinned to CPUS unless that is empty.
on_cpu() {
    local cpu=$1
    shift
    if [[ -n $cpu ]]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

# Whether a pid is a live process. An exited child not yet waited for is a zombie, which
# `kill -0` still finds, so look at its state instead.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }           # drop "pid (comm) ": comm may contain spaces
    [[ ${stat%% *} != Z ]]
}

# stop PID [SIGNAL]: SIGTERM by default (every server here shuts down cleanly on it; perf
# needs SIGINT to write its data), SIGKILL after 10 s. Its children must be gone too.
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
        note "warning: ${RUNNING[$pid]:-pid $pid} ignored SIG$signal for 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true     # reap it, so its pid cannot be mistaken later
    for child in $children; do
        if alive "$child"; then
            note "warning: pid $child, started by ${RUNNING[$pid]:-pid $pid}, outlived it; killing it"
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
    unset "RUNNING[$pid]"
}

stop_all() {
    local pid
    for pid in "${!RUNNING[@]}"; do stop "$pid"; done
}

cleanup() {
    local status=$? pid left=0
    trap - EXIT INT TERM
    stop_all
    for pid in "${EVER[@]}"; do
        if alive "$pid"; then left=$((left + 1)); fi
    done
    ((left == 0)) || note "warning: $left processes this script started are still running"
    if ((status == 0)); then
        rm -rf "$WORK"
    else
        note "$(basename "$0") failed; logs kept in $WORK"
    fi
    exit "$status"
}

# ports_free PORT...: a port already taken would mean measuring someone else's server.
ports_free() {
    local port
    for port; do
        ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
            die "port $port on 127.0.0.1 is in use; stop what runs there, or change the ports at the top of $(basename "$0")"
    done
}

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

# The lab's topologies. Each script uses its own ports (18xxx/19xxx, away from the lab's
# 8001.., 9001.., 8080), so a lab in another terminal is left alone.
#
# start_dbserver [--cpu CPUS] ADDR DELAY: a dbserver with its data in $WORK; sets LAST_PID.
start_dbserver() {
    local pin=()
    if [[ $1 == --cpu ]]; then pin=(--cpu "$2"); shift 2; fi
    local dir
    dir=$(mktemp -d "$WORK/db.XXXX")
    start "${pin[@]}" "dbserver-${1##*:}" "$GCLAB" dbserver --addr "$1" --data-dir "$dir" --delay "$2"
    wait_for "http://$1/stats" "$LAST_PID"
}
# start_frontend [--cpu CPUS] PEER_PORT PEERS DB: a frontend, HTTP on PEER_PORT + 1000.
start_frontend() {
    local pin=()
    if [[ $1 == --cpu ]]; then pin=(--cpu "$2"); shift 2; fi
    # FRONTEND_FLAGS: more flags for the frontend, split on spaces (e.g. "--events 0").
    # shellcheck disable=SC2086
    start "${pin[@]}" "frontend-$1" "$GCLAB" frontend --port "$1" --peers "$2" --db "$3" ${FRONTEND_FLAGS:-}
}

# curl_config METHOD URL [SIZE] < NAMES: a curl config file with one request per name on
# stdin, URL having %s for the name; a PUT sends "value of NAME" padded to SIZE bytes.
# `next` gives each request its own options: without it the bodies of PUTs would pile up
# into one, and every key would get every value.
curl_config() {
    awk -v method="$1" -v url="$2" -v size="${3:-0}" '{
        if (NR > 1) print "next"
        printf "url = \"%s\"\nrequest = \"%s\"\noutput = \"/dev/null\"\n", sprintf(url, $1), method
        printf "write-out = \"%%{http_code}\\n\"\n"
        if (method == "PUT") printf "data-binary = \"%-*s\"\n", size, "value of " $1
    }'
}

# curl_all CONFIG CODE: every request of a curl config file, 64 at a time, in ONE curl
# process (100,000 `gclab cli set`s would be 100,000 processes); dies unless each one
# answered CODE.
curl_all() {
    local got want
    want=$(grep -c '^url' "$1")
    got=$(timeout 600 curl --no-progress-meter --parallel --parallel-max 64 --max-time 30 \
        --config "$1" 2>>"$WORK/curl.log" | sort | uniq -c)
    [[ $(awk -v code="$2" '$2 == code { print $1 }' <<<"$got") == "$want" ]] ||
        die "$1: not every one of $want requests answered $2: ${got//$'\n'/, }"
}

# ---------------------------------------------------------------------------------------
# Measuring.

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# cpu_ticks PID: CPU time (utime + stime, in clock ticks) of the process, all its threads,
# and its live children (nginx's master does nothing; its workers do the work). Read
# before and after a run, it gives the server's CPU per request, which unlike req/s does
# not depend on how much of the machine wrk left it.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
    local pid stat f total=0
    for pid in "$1" $(pgrep -P "$1" || true); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        f=(${stat##*) })            # f[0] is field 3 (state): utime, field 14, is f[11]
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# wait_for_quiet: a `cargo build` next door takes cores from the servers and wrk alike,
# and the figures lie. Called between runs, while our own servers idle, so any busy CPU
# is someone else's: wait until the machine is under 10% busy, for at most QUIET_WAIT
# seconds in all (per script), so the run still ends in time.
QUIET_WAIT=${QUIET_WAIT:-120}
cpu_busy_idle() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
wait_for_quiet() {
    local b0 i0 b1 i1 pct announced=
    while ((QUIET_WAIT > 0)); do
        read -r b0 i0 < <(cpu_busy_idle)
        sleep 1
        read -r b1 i1 < <(cpu_busy_idle)
        pct=$((100 * (b1 - b0) / (b1 - b0 + i1 - i0 + 1)))
        ((pct > 10)) || return 0
        [[ -n $announced ]] || note "the machine is ${pct}% busy with other work; waiting for quiet (${QUIET_WAIT} s of waiting left)"
        announced=yes
        QUIET_WAIT=$((QUIET_WAIT - 1))
    done
}

# run_wrk CPUS URL KEYFILE [SECONDS]: one `wrk -t1 -cWRK_CONNECTIONS -dSECONDS` (WRK_SECONDS)
# of GET /cache/KEY over the keys in KEYFILE, pinned to CPUS (empty: not pinned); prints its
# result as one line of JSON {requests, seconds, rps, p50_us, p99_us, max_us, errors}
# (see random-key.lua). One thread and 32 connections unless WRK_CONNECTIONS says otherwise,
# as issue 10 measured.
WRK_ARGS="-t1 -c32 -d${WRK_SECONDS}s"
run_wrk() {
    local out
    out=$(mktemp "$WORK/wrk.XXXX")
    on_cpu "$1" timeout $((${4:-$WRK_SECONDS} + 30)) wrk -t1 "-c${WRK_CONNECTIONS:-32}" \
        "-d${4:-$WRK_SECONDS}s" -s "$BENCH/random-key.lua" "$2" -- "$3" >"$out" 2>&1 ||
        die "wrk failed: $(cat "$out")"
    sed -n 's/^RESULT //p' "$out" | grep . || die "wrk printed no RESULT line; see $out"
}

# peer_counters URL: a frontend's gets, and how many of them asked a peer, as JSON.
peer_counters() { curl -fsS --max-time 5 "$1/stats" | jq -c '{gets, peer_loads}'; }

# ---------------------------------------------------------------------------------------
# JSON: jqm is jq that can `include "lib";` (bench/lib.jq: median, round(n), target).
jqm() { jq -L "$BENCH" "$@"; }
