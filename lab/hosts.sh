#!/usr/bin/env bash
# lab/hosts.sh — the lab on many hosts: every server on a "machine" of its own.
#
# On one computer, `gclab up` puts every server on 127.0.0.1 and tells them apart by port
# (8001, 8002, 8003). Real groupcache peers are separate hosts, each with its own address
# and the same ports, and a network between them that takes time. Linux network namespaces
# give us that without virtual machines: each namespace has its own interfaces, addresses,
# routing table and ports, and a virtual cable (a veth pair) plugs it into a virtual switch
# (a bridge) that the root namespace, where you type, is plugged into too:
#
#   root namespace (you, the cli)   10.77.0.1 on the bridge gclab-br
#   gclab-db                        10.77.0.10   gclab dbserver on :8080
#   gclab-1 … gclab-N               10.77.0.11…  gclab frontend: tarpc :8001, HTTP :9001
#
# (lab/pictures/hosts.svg draws it.) Usage, as root (namespaces need it):
#
#   lab/hosts.sh up N               N frontends (1-50) and a dbserver, each in its own namespace
#   lab/hosts.sh status             what is up: each host, its process, whether it answers
#   lab/hosts.sh delay 20ms [loss 1%]   a slower (and lossy) network between the hosts
#   lab/hosts.sh delay off          (or `delay 0`) the network back to full speed
#   lab/hosts.sh kill I             kill -9 frontend I, for the failover exercise (lab page 6)
#   lab/hosts.sh start I            start frontend I again, with the flags `up` gave it
#   lab/hosts.sh down               stop everything `up` started and remove the namespaces
#
# `delay` adds its time to the packets each host SENDS (netem on the host's own end of its
# cable; where the kernel has no netem, `gclab wire` in each host does the same, fed by an
# iptables NFQUEUE rule, which needs iptables). So `delay 20ms` costs 40 ms per round trip between two hosts (20 ms each way: a
# peer call, or a frontend's read from the dbserver), and 20 ms per round trip between the
# cli in the root namespace and a host (only the host's answer is delayed). `loss 1%` drops
# one packet in a hundred that a host sends, each way; TCP resends it after its timeout
# (200 ms or more), which is what a lossy network's tail latency looks like.
#
# `up` refuses to run when a lab from this script is already up (it says so, and exits 1):
# run `lab/hosts.sh down` first. `down` is always safe, also when nothing is up, and it
# never touches a process it did not start.
#
# Settings, from the environment:
#   GCLAB           the gclab binary [target/debug/gclab, then bin/gclab, then `gclab` on PATH]
#   FRONTEND_FLAGS  more flags for every frontend, split on spaces, e.g. "--quiet-hits"
#   DB_FLAGS        more flags for the dbserver, e.g. "--delay 1s"
#   GCLAB_HOSTS_DIR where pids, logs and the database live [/tmp/gclab-hosts]
#
# Exit codes: 0 done, 1 it failed (the message says why), 2 it cannot run here (not root,
# a tool missing, a usage error).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${GCLAB_HOSTS_DIR:-/tmp/gclab-hosts}

# The network. A private range (RFC 1918) that nothing else on a laptop is likely to use.
BRIDGE=gclab-br
NET=10.77.0
BRIDGE_IP=$NET.1
DB_NS=gclab-db
DB_IP=$NET.10
DB_PORT=8080
PEER_PORT=8001          # every frontend uses the same ports, as real hosts would
HTTP_PORT=$((PEER_PORT + 1000))
MAX_FRONTENDS=50
IFACE=eth0              # each namespace's end of its cable, named as on a real host

# The help is this file's opening comment.
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { printf 'hosts.sh: %s\n' "$*" >&2; exit 1; }
cannot() { printf 'hosts.sh: %s\n' "$*" >&2; exit 2; }   # cannot run here at all
say() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------------------------------
# Names and addresses. Frontend I is host I: namespace gclab-I, address 10.77.0.(10 + I).

ns_of() { echo "gclab-$1"; }
ip_of() { echo "$NET.$((10 + $1))"; }
# The root namespace's end of a host's cable: gclab-v-db, gclab-v-1, … (at most 15 bytes).
veth_of() { echo "gclab-v-$1"; }

# How many frontends the lab that is up has (0: none).
frontends_up() { cat "$STATE/frontends" 2>/dev/null || echo 0; }

# Every peer, comma-separated: the same list for every frontend, as groupcache requires.
peer_list() {
    local i list=()
    for ((i = 1; i <= $1; i++)); do list+=("$(ip_of "$i"):$PEER_PORT"); done
    local IFS=,
    echo "${list[*]}"
}
http_list() {
    local i list=()
    for ((i = 1; i <= $1; i++)); do list+=("$(ip_of "$i"):$HTTP_PORT"); done
    local IFS=,
    echo "${list[*]}"
}

# The namespaces this script makes, whoever's state dir started them: gclab-db, gclab-1, …
our_namespaces() { ip netns list | awk '{ print $1 }' | grep -E '^gclab-(db|[0-9]+)$' | sort -V || true; }

# ---------------------------------------------------------------------------------------
# Before anything: the tools, and root.

preflight() {
    local tool missing=()
    for tool in ip tc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) ||
        cannot "needs ${missing[*]}, from the package iproute2 (apt-get install iproute2)"
    command -v curl >/dev/null || cannot "needs curl, to see the servers answer (apt-get install curl)"
    ((EUID == 0)) || cannot "needs root (ip netns): run it with sudo"
}

# The gclab binary, as an absolute path: `ip netns exec` runs it from another namespace, and
# the pid files name it.
find_gclab() {
    local candidate
    if [[ -n ${GCLAB:-} ]]; then
        [[ -f $GCLAB && -x $GCLAB ]] || die "GCLAB=$GCLAB is not an executable file"
        realpath "$GCLAB"
        return
    fi
    for candidate in "${CARGO_TARGET_DIR:-$ROOT/target}/debug/gclab" "$ROOT/bin/gclab" "$(command -v gclab || true)"; do
        if [[ -n $candidate && -x $candidate ]]; then
            realpath "$candidate"
            return
        fi
    done
    die "no gclab binary: build it (cargo build, or ./build.sh), or set GCLAB=/path/to/gclab"
}

# ---------------------------------------------------------------------------------------
# Processes. Each server runs under `setsid` (a session of its own, so closing the terminal
# that ran `up` does not hang it up) and `ip netns exec NS` (which enters the namespace and
# then execs the server). Both exec rather than fork, so the pid we record is the server's
# own, and `kill PID` reaches the server itself.

# Whether a pid is a live process. An exited process nobody has reaped yet is a zombie,
# which `kill -0` still finds, so look at its state instead.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }           # drop "pid (comm) ": comm may contain spaces
    [[ ${stat%% *} != Z ]]
}

# The pid in a server's pid file, if that process is still the server we started: alive, a
# gclab, and in the namespace we started it in. A pid that the system has since given to
# another program is never ours to kill.
our_pid() {
    local name=$1 ns=$2 pid
    pid=$(cat "$STATE/pids/$name" 2>/dev/null) || return 1
    alive "$pid" || return 1
    [[ $(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1) == "$(cat "$STATE/gclab")" ]] || return 1
    [[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]] || return 1
    echo "$pid"
}

# launch NAME NS COMMAND...: COMMAND inside NS, in the background, its output in the
# server's log; the pid goes in the state dir.
launch() {
    local name=$1 ns=$2
    shift 2
    setsid ip netns exec "$ns" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
    echo $! >"$STATE/pids/$name"
}

# The last lines of a server's log, to say why it did not start.
log_tail() {
    printf '\n--- the last lines of %s ---\n' "$STATE/logs/$1.log" >&2
    tail -n 15 "$STATE/logs/$1.log" >&2 || true
    printf -- '---\n' >&2
}

# wait_until_answers NAME URL: until URL answers 200, for at most 15 s, while the
# server lives. curl runs from the root namespace, as the cli will: so this also proves
# the cable and the bridge work. --noproxy: a proxy in the environment cannot reach 10.77.
wait_until_answers() {
    local name=$1 url=$2 i pid
    pid=$(cat "$STATE/pids/$name")
    for ((i = 0; i < 150; i++)); do
        curl -fs --noproxy '*' --max-time 1 -o /dev/null "$url" && return 0
        # The bare pid: until `ip netns exec` has exec'd the server, it is not yet a gclab.
        if ! alive "$pid"; then
            log_tail "$name"
            die "$name exited before it answered $url (its log is above)"
        fi
        sleep 0.1
    done
    log_tail "$name"
    die "$name did not answer $url within 15 s (its log is above)"
}

# stop NAME NS: SIGTERM (every gclab server finishes its requests and exits 0 on it), and
# SIGKILL if it is still there after 5 s.
stop() {
    local name=$1 ns=$2 pid i
    if pid=$(our_pid "$name" "$ns"); then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "  $name (pid $pid) ignored SIGTERM for 5 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "  stopped $name (pid $pid)"
    fi
    rm -f "$STATE/pids/$name"
}

# flags FILE: the words of a flags file that `up` wrote (DB_FLAGS or FRONTEND_FLAGS, split on
# spaces), one per line, for `mapfile`.
flags() { tr -s ' ' '\n' <"$1" | grep . || true; }

start_dbserver() {
    local extra
    mapfile -t extra < <(flags "$STATE/db-flags")
    launch dbserver "$DB_NS" "$(cat "$STATE/gclab")" dbserver --addr "$DB_IP:$DB_PORT" \
        --data-dir "$STATE/db" "${extra[@]}"
    wait_until_answers dbserver "http://$DB_IP:$DB_PORT/stats"
}

# start_frontend I: frontend I, bound to its host's address: the address it listens on is
# also its name to its peers, and in the ring, so every node agrees who owns what.
start_frontend() {
    local i=$1 n extra
    n=$(frontends_up)
    mapfile -t extra < <(flags "$STATE/frontend-flags")   # FRONTEND_FLAGS, as `up` kept them
    launch "frontend-$i" "$(ns_of "$i")" "$(cat "$STATE/gclab")" frontend \
        --bind "$(ip_of "$i")" --port "$PEER_PORT" --peers "$(peer_list "$n")" \
        --db "$DB_IP:$DB_PORT" "${extra[@]}"
    wait_until_answers "frontend-$i" "http://$(ip_of "$i"):$HTTP_PORT/stats"
}

# ---------------------------------------------------------------------------------------
# The network.

# make_host NS ADDRESS ROOT_END: a namespace with loopback up and one cable into the bridge.
make_host() {
    local ns=$1 addr=$2 veth=$3
    # A fresh namespace has nothing but a loopback interface, and that one down.
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # The cable: a veth pair is two interfaces joined back to back; a packet sent into
    # one comes out of the other. One end stays here, the other moves into the namespace
    # (where it is called eth0, as on a real host).
    ip link add "$veth" type veth peer name "$IFACE" netns "$ns"
    # Our end plugs into the switch; the host's end gets the host's address. The /24 says
    # the whole 10.77.0.x range is on this one cable, so no router is needed between hosts.
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$addr/24" dev "$IFACE"
    ip -n "$ns" link set "$IFACE" up
}

make_network() {
    local n=$1 i
    # The switch. Giving the bridge itself an address plugs the root namespace in: that is
    # how the cli, and curl, reach the hosts.
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    make_host "$DB_NS" "$DB_IP" "$(veth_of db)"
    for ((i = 1; i <= n; i++)); do
        make_host "$(ns_of "$i")" "$(ip_of "$i")" "$(veth_of "$i")"
    done
}

# ---------------------------------------------------------------------------------------
# The commands.

cmd_up() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAX_FRONTENDS)) ||
        cannot "usage: lab/hosts.sh up N, with N from 1 to $MAX_FRONTENDS frontends"
    # Already up (from this state dir or another)? Say so rather than half-start a second.
    local existing
    existing=$(our_namespaces | tr '\n' ' ')
    if [[ -n $existing ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
        die "already up (namespaces: ${existing:-none}; bridge $BRIDGE$(ip link show "$BRIDGE" >/dev/null 2>&1 || echo ': absent')): see lab/hosts.sh status, or run lab/hosts.sh down first"
    fi
    local gclab
    gclab=$(find_gclab)

    # A fresh state: only what this script puts there is removed (GCLAB_HOSTS_DIR may be a
    # directory of yours). The flags are kept so that `start I` restarts a frontend as it was.
    rm -rf "$STATE/pids" "$STATE/logs" "$STATE/db"
    mkdir -p "$STATE/pids" "$STATE/logs" "$STATE/db"
    echo "$gclab" >"$STATE/gclab"
    echo "${FRONTEND_FLAGS:-}" >"$STATE/frontend-flags"
    echo "${DB_FLAGS:-}" >"$STATE/db-flags"
    echo "$n" >"$STATE/frontends"

    # If anything below fails (or Ctrl-C), take down what was built, so the next `up` starts
    # clean; the logs stay.
    trap 'status=$?; trap - EXIT; if ((status != 0)); then echo "hosts.sh: up failed; taking down what it started (logs stay in $STATE/logs)" >&2; cmd_down >&2; fi; exit $status' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    say "making the network: bridge $BRIDGE ($BRIDGE_IP) and $((n + 1)) namespaces"
    make_network "$n"
    say "starting the dbserver in $DB_NS and $n frontend(s) in gclab-1 … gclab-$n ($gclab)"
    start_dbserver
    local i
    for ((i = 1; i <= n; i++)); do start_frontend "$i"; done
    trap - EXIT INT TERM

    say ""
    print_table
    local cli=${gclab/#$ROOT\//}
    local frontends db=$DB_IP:$DB_PORT
    frontends=$(http_list "$n")
    cat <<EOF

Try, from this shell in the repository root (the root namespace; each command names its hosts):
  $cli cli set --key foo --value bar --db $db --frontends $frontends
  $cli cli cget --key foo --frontend $(ip_of 1):$HTTP_PORT
  curl -s $(ip_of 1):$HTTP_PORT/owner/foo
  $cli cli herd --requests 1000 --db $db --frontends $frontends
  $cli cli stats --db $db --frontends $frontends
  lab/hosts.sh delay 20ms        then the herd again: a peer call now costs 40 ms
  lab/hosts.sh kill 1            then cget through the others: the failover
  ip netns exec gclab-1 ss -tn   a host's own view: its connections to its peers
Logs: $STATE/logs/ (tail -f $STATE/logs/frontend-1.log). Stop it all: lab/hosts.sh down
EOF
}

# One row per host: what runs there, and whether it answers now.
print_table() {
    local n i pid what answers
    n=$(frontends_up)
    printf '%-11s %-10s %-17s %-9s %-8s %s\n' host namespace address pid answers runs
    row() {    # row NAME NS ADDRESS URL WHAT
        pid=$(our_pid "$1" "$2") || pid=-
        if curl -fs --noproxy '*' --max-time 1 -o /dev/null "$4"; then answers=yes; else answers=no; fi
        printf '%-11s %-10s %-17s %-9s %-8s %s\n' "$1" "$2" "$3" "$pid" "$answers" "$5" | sed 's/ *$//'
    }
    row dbserver "$DB_NS" "$DB_IP:$DB_PORT" "http://$DB_IP:$DB_PORT/stats" \
        "gclab dbserver $(cat "$STATE/db-flags")"
    for ((i = 1; i <= n; i++)); do
        what="gclab frontend: tarpc :$PEER_PORT, HTTP :$HTTP_PORT $(cat "$STATE/frontend-flags")"
        row "frontend-$i" "$(ns_of "$i")" "$(ip_of "$i"):$PEER_PORT" \
            "http://$(ip_of "$i"):$HTTP_PORT/stats" "$what"
    done
}

cmd_status() {
    local namespaces ns qdisc pid
    namespaces=$(our_namespaces)
    if [[ -z $namespaces && ! -d $STATE/pids ]]; then
        say "nothing is up (no gclab-* namespaces); start it with lab/hosts.sh up 3"
        return 0
    fi
    if [[ -f $STATE/frontends ]]; then
        print_table
    else
        say "namespaces $(echo "$namespaces" | tr '\n' ' ')exist, but $STATE has no record of them: another GCLAB_HOSTS_DIR started them, or run lab/hosts.sh down"
    fi
    # The delay each host adds to what it sends, as the kernel has it.
    say ""
    for ns in $namespaces; do
        qdisc=$(tc -n "$ns" qdisc show dev "$IFACE" 2>/dev/null | grep -o 'netem.*' || true)
        if [[ -z $qdisc ]] && pid=$(our_pid "wire-$ns" "$ns"); then
            qdisc="gclab wire (pid $pid): $(sed 's/^gclab wire //' "$STATE/delay" 2>/dev/null)"
        fi
        say "$ns: ${qdisc:-no added delay}"
    done
}

# Without netem (a kernel built without CONFIG_NET_SCH_NETEM: tc says "Specified qdisc kind
# is unknown"), the same in user space: each host's outgoing packets go to a netfilter queue
# (iptables -j NFQUEUE), where `gclab wire`, running in the host's namespace, holds each one
# for the delay and drops the share lost. --queue-bypass: while no wire reads the queue,
# packets pass untouched rather than being dropped.
WIRE_RULE=(POSTROUTING -o "$IFACE" -j NFQUEUE --queue-num 0 --queue-bypass)

kernel_has_netem() {
    local out
    out=$(tc -n "$1" qdisc replace dev "$IFACE" root netem delay 0ms 2>&1) && {
        tc -n "$1" qdisc del dev "$IFACE" root 2>/dev/null || true
        return 0
    }
    [[ $out == *"qdisc kind is unknown"* ]] || die "tc -n $1 qdisc replace dev $IFACE root netem: $out"
    return 1
}

# No wire, and no queue rule, on any host.
remove_wires() {
    local ns
    for ns in $(our_namespaces); do
        while ip netns exec "$ns" iptables -t mangle -D "${WIRE_RULE[@]}" 2>/dev/null; do :; done
        stop "wire-$ns" "$ns" >/dev/null
    done
}

# start_wire NS DELAY LOSS: gclab wire in NS, then the rule that feeds it.
start_wire() {
    local ns=$1 i
    launch "wire-$ns" "$ns" "$(cat "$STATE/gclab")" wire --delay "$2" --loss "$3"
    for ((i = 0; i < 50; i++)); do
        grep -q 'wire on netfilter queue' "$STATE/logs/wire-$ns.log" 2>/dev/null && break
        alive "$(cat "$STATE/pids/wire-$ns")" || { log_tail "wire-$ns"; die "gclab wire in $ns exited (its log is above)"; }
        sleep 0.1
    done
    ip netns exec "$ns" iptables -t mangle -A "${WIRE_RULE[@]}"
}

cmd_delay() {
    local delay=${1:-} loss=0% netem=() ns namespaces out first
    [[ -n $delay ]] || cannot "usage: lab/hosts.sh delay 20ms [loss 1%] | delay off"
    namespaces=$(our_namespaces)
    [[ -n $namespaces ]] || die "nothing is up: lab/hosts.sh up 3 first"
    if [[ $delay == off || $delay == 0 ]]; then
        (($# == 1)) || cannot "usage: lab/hosts.sh delay off (nothing after it)"
        # Deleting the root qdisc puts back the kernel's default; none there is no error.
        for ns in $namespaces; do tc -n "$ns" qdisc del dev "$IFACE" root 2>/dev/null || true; done
        remove_wires
        rm -f "$STATE/delay"
        say "no added delay or loss on any host"
        return 0
    fi
    [[ $delay =~ ^[0-9]+(\.[0-9]+)?(us|ms|s)$ ]] || cannot "delay $delay: give a time such as 20ms, 500us or 1s (or off)"
    netem=(delay "$delay")
    if (($# > 1)); then
        [[ $# == 3 && $2 == loss && $3 =~ ^[0-9]+(\.[0-9]+)?%$ ]] ||
            cannot "usage: lab/hosts.sh delay 20ms [loss 1%]"
        loss=$3
        netem+=(loss "$loss")
    fi
    first=$(echo "$namespaces" | head -n 1)
    remove_wires
    if kernel_has_netem "$first"; then
        for ns in $namespaces; do
            # netem ("network emulator") holds each packet the host sends for the delay, and
            # drops the given share. `replace` puts it there whether or not one was before.
            out=$(tc -n "$ns" qdisc replace dev "$IFACE" root netem "${netem[@]}" 2>&1) ||
                die "tc -n $ns qdisc replace dev $IFACE root netem ${netem[*]}: $out"
        done
        echo "netem ${netem[*]}" >"$STATE/delay"
        say "every host now adds ${netem[*]} to the packets it sends, by tc netem:"
    else
        command -v iptables >/dev/null ||
            cannot "this kernel has no netem (CONFIG_NET_SCH_NETEM), and the fallback, gclab wire, needs iptables (apt-get install iptables)"
        for ns in $namespaces; do start_wire "$ns" "$delay" "$loss"; done
        echo "gclab wire ${netem[*]}" >"$STATE/delay"
        say "every host now adds ${netem[*]} to the packets it sends, by gclab wire (this kernel has no netem):"
    fi
    say "  $(echo "$delay" | awk '{ v = $1 + 0; u = $1; sub(/^[0-9.]+/, "", u); print 2 * v u }') per round trip between two hosts (a peer call, a read from the dbserver),"
    say "  $delay per round trip between this shell and a host; lab/hosts.sh delay off removes it"
}

# frontend_index I: I, checked against the lab that is up.
frontend_index() {
    local i=${1:-} n
    n=$(frontends_up)
    ((n > 0)) || die "nothing is up: lab/hosts.sh up 3 first"
    [[ $i =~ ^[0-9]+$ ]] && ((i >= 1 && i <= n)) || cannot "give a frontend from 1 to $n"
    echo "$i"
}

cmd_kill() {
    local i pid
    i=$(frontend_index "${1:-}")
    pid=$(our_pid "frontend-$i" "$(ns_of "$i")") || die "frontend $i is not running (lab/hosts.sh start $i starts it)"
    # SIGKILL, like a crash or a pulled plug: no goodbye to anyone.
    kill -KILL "$pid"
    rm -f "$STATE/pids/frontend-$i"
    say "killed frontend $i (kill -9 $pid) at $(ip_of "$i"):$PEER_PORT; the others will fail over its keys"
    say "to the next peer in each key's ranking. lab/hosts.sh start $i brings it back."
}

cmd_start() {
    local i pid
    i=$(frontend_index "${1:-}")
    if pid=$(our_pid "frontend-$i" "$(ns_of "$i")"); then
        die "frontend $i is already running (pid $pid)"
    fi
    start_frontend "$i"
    say "started frontend $i (pid $(cat "$STATE/pids/frontend-$i")) at $(ip_of "$i"):$PEER_PORT, HTTP $(ip_of "$i"):$HTTP_PORT"
}

cmd_down() {
    local name ns left
    # 1. Every process from the state dir, by pid: frontends first, then the dbserver.
    local file
    for file in "$STATE"/pids/frontend-*; do
        [[ -e $file ]] || continue      # no match: the glob stays as written
        name=${file##*/}
        stop "$name" "$(ns_of "${name#frontend-}")"
    done
    [[ ! -e $STATE/pids/dbserver ]] || stop dbserver "$DB_NS"
    for file in "$STATE"/pids/wire-*; do
        [[ -e $file ]] || continue
        name=${file##*/}
        stop "$name" "${name#wire-}" >/dev/null
    done
    # 2. The namespaces, by name. A process someone else started inside one keeps it alive
    #    after its name is gone: say so, but leave that process alone.
    for ns in $(our_namespaces); do
        left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [[ -z $left ]] || say "  warning: pids ${left}still run in $ns and were not started here; they keep running"
        ip netns del "$ns"
        say "  removed namespace $ns"
    done
    # 3. The bridge, and any cable end left over (a namespace held alive keeps its cable).
    for name in $(ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | sed 's/@.*//' | grep -E '^gclab-v-' || true); do
        ip link del "$name" 2>/dev/null || true
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link del "$BRIDGE"
        say "  removed bridge $BRIDGE"
    fi
    rm -rf "$STATE/pids" "$STATE/frontends" "$STATE/delay"
    say "down: nothing of lab/hosts.sh is running (logs, if any, stay in $STATE/logs)"
}

# ---------------------------------------------------------------------------------------

command=${1:-help}
(($# == 0)) || shift
case $command in
    help | -h | --help) usage; exit 0 ;;
    up | status | delay | kill | start | down) preflight ;;
    *) usage >&2; cannot "unknown command '$command'" ;;
esac
"cmd_$command" "$@"
