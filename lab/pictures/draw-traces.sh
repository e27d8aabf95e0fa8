#!/usr/bin/env bash
# lab/pictures/draw-traces.sh — draws the trace pictures of lab pages 2, 3, 4 and 6 again, from
# a run of their own commands on a topology of its own.
#
#   bash lab/pictures/draw-traces.sh        (after ./build.sh; needs curl, jq, rsvg-convert)
#
# It starts `gclab up` on ports the pages do not use (peers 8101-8103, clients 9101-9103,
# dbserver 8180, data in a temporary directory), traces what each page traces, renders each
# SVG to an 800 px PNG here, and stops everything it started. The pictures differ from run
# to run only in their times.
set -euo pipefail
cd "$(dirname "$0")/../.."
GCLAB=${GCLAB:-bin/gclab}
out=lab/pictures
[[ -x $GCLAB ]] || { echo "no $GCLAB: run ./build.sh first (or set GCLAB=path/to/gclab)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/gclab-draw.XXXXXX")
up=
stop() {
    if [[ -n $up ]]; then
        kill -INT "$up" 2>/dev/null || true
        wait "$up" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT

"$GCLAB" up --port 8101 --db-addr 127.0.0.1:8180 --data-dir "$work/data" --quiet-hits \
    >"$work/up.log" 2>&1 &
up=$!
for port in 9101 9102 9103; do
    for _ in $(seq 100); do curl -sf "localhost:$port/stats" >/dev/null && break; sleep 0.1; done
done
where=(--frontends 9101,9102,9103 --db 127.0.0.1:8180)

# The first key of key1, key2, … that frontend $1 (a peer port) owns.
owned_by() {
    for i in $(seq 100); do
        if [[ $(curl -s "localhost:9101/owner/key$i" | jq -r .owner) == "127.0.0.1:$1" ]]; then
            echo "key$i"
            return
        fi
    done
    exit 1
}

draw() { # draw NAME COMMAND...: runs a trace command, then renders NAME.svg to NAME.png
    local name=$1
    shift
    "$@" "$work/$name.svg"
    rsvg-convert -w 800 -o "$out/$name.png" "$work/$name.svg"
    echo "drew $out/$name.png"
}

# Page 2: a key's first cget, at its owner: a miss, a flight, the read.
key=$(owned_by 8101)
"$GCLAB" cli set --key "$key" --value two --db 127.0.0.1:8180 --frontends "" >/dev/null
draw 02-trace-cget-miss "$GCLAB" cli trace cget --key "$key" --port 9101 "${where[@]}" -o

# Page 3: a key owned by 8101, asked for through 8102: the hop to its owner.
for i in $(seq 100); do
    key=key$((i + 100))
    [[ $(curl -s "localhost:9101/owner/$key" | jq -r .owner) == 127.0.0.1:8101 ]] && break
done
"$GCLAB" cli set --key "$key" --value two --db 127.0.0.1:8180 --frontends "" >/dev/null
draw 03-trace-cget-peer "$GCLAB" cli trace cget --key "$key" --port 9102 "${where[@]}" -o

# Page 4 (and the README): a herd of 1000.
draw 04-trace-herd "$GCLAB" cli herd "${where[@]}" --trace

# Page 6: a failover. A key that ranks 8103 first and 8102 second, 8103 killed, asked for
# through 8101.
for i in $(seq 200); do
    key=key$((i + 200))
    [[ $(curl -s "localhost:9101/owner/$key" | jq -c .ranking) == '["127.0.0.1:8103","127.0.0.1:8102","127.0.0.1:8101"]' ]] && break
done
"$GCLAB" cli set --key "$key" --value "value of $key" --db 127.0.0.1:8180 --frontends "" >/dev/null
kill -9 "$(curl -s localhost:9103/faults | jq -r .pid)"
sleep 0.5
draw 06-trace-failover "$GCLAB" cli trace cget --key "$key" --port 9101 "${where[@]}" -o
