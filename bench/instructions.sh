#!/usr/bin/env bash
# bench/instructions.sh — instructions per cache hit of two gclab binaries, by callgrind.
#
#   bash bench/instructions.sh OLD_BINARY NEW_BINARY
#
# Needs: valgrind, python3, curl, jq. Knobs: ROUNDS=3 FEW=1000 MANY=8000, and A_FLAGS /
# B_FLAGS: more flags for each side's frontend (see bench/events.sh).
#
# wrk's req/s on this 2-core machine moves by 10-20% from round to round, more than most
# changes to the hit path cost; an instruction count does not. Each round runs a lone
# frontend (its own only peer) under `valgrind --tool=callgrind` and asks it for one cached
# key FEW times, then, in a fresh frontend, MANY times, over one keep-alive connection.
# (MANY − FEW) / the difference in totals is the cost of one hit, start-up and shutdown
# cancelled out. Rounds interleave the binaries (a, b, a, b); the median per binary, and b/a,
# are printed as one JSON object on stdout.

source "$(dirname "$0")/lib.sh"

(($# == 2)) || die "usage: bash bench/instructions.sh OLD_BINARY NEW_BINARY"
[[ -x $1 && -x $2 ]] || die "both arguments must be gclab binaries"
GCLAB=$1 # begin() then skips the build
need valgrind python3
begin
FEW=${FEW:-1000} MANY=${MANY:-8000}
ports_free 18180 18101 19101

cat >"$WORK/hits.py" <<'EOF'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", "/cache/foo")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
EOF

# total BINARY N [FLAGS]: the instructions a frontend ran, start to stop, serving N hits.
total() {
    local bin=$1 n=$2 flags=${3:-} out="$WORK/callgrind.$RANDOM"
    rm -rf "$WORK/data"
    GCLAB=$bin start_dbserver 127.0.0.1:18180 0ms
    wait_for http://127.0.0.1:18180/stats "$LAST_PID"
    local db=$LAST_PID
    "$bin" cli set --key foo --value "a value of thirty bytes, ok." --db 127.0.0.1:18180 \
        --frontends "" >/dev/null
    start frontend valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin" frontend --port 18101 --peers 18101 --db 127.0.0.1:18180 $flags
    local fe=$LAST_PID
    wait_for http://127.0.0.1:19101/stats "$fe"
    python3 "$WORK/hits.py" 19101 "$n"
    stop "$fe"
    stop "$db"
    sed -n 's/^summary: //p' "$out"
}

declare -A BIN=([a]=$1 [b]=$2) PER=([a]= [b]=) FLAGS=([a]=${A_FLAGS:-} [b]=${B_FLAGS:-})
for ((round = 1; round <= ROUNDS; round++)); do
    for side in a b; do
        few=$(total "${BIN[$side]}" "$FEW" "${FLAGS[$side]}")
        many=$(total "${BIN[$side]}" "$MANY" "${FLAGS[$side]}")
        per=$(((many - few) / (MANY - FEW)))
        PER[$side]+="$per "
        say "round $round $side: $per instructions per hit"
    done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
a=$(median <<<"${PER[a]}")
b=$(median <<<"${PER[b]}")
jq -n --arg a "$1" --arg b "$2" --arg fa "${FLAGS[a]}" --arg fb "${FLAGS[b]}" --argjson ia "$a" --argjson ib "$b" \
    '{a: {binary: $a, flags: $fa, instructions_per_hit: $ia}, b: {binary: $b, flags: $fb, instructions_per_hit: $ib},
      b_vs_a: (($ib / $ia * 1000 | round) / 1000)}'
