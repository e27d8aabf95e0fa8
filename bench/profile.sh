#!/usr/bin/env bash
# bench/profile.sh — where a missed target goes: perf profiles, as JSON on stdout.
#
#   bash bench/profile.sh cpu      # the frontend's CPU during cache hits (hits.sh, pinned)
#   bash bench/profile.sh faults   # who makes the heap grow while a frontend caches keys (rss.sh)
#   bash bench/profile.sh cpu faults
#
# Needs: perf (apt-get install linux-perf), and what hits.sh / rss.sh need. bench/all.sh
# runs it by itself for a missed target (PROFILE=auto), or always (PROFILE=always).
#
# It runs hits.sh / rss.sh with PERF_DATA set (they then set up as usual and run one
# workload under `perf record` instead of measuring), then summarises the samples:
#   cpu:    `perf record -F 999 -g -p <frontend>` over one WRK_SECONDS run of own-key hits;
#           bench/cpu-groups.awk sums the flat profile by what each function belongs to;
#   faults: `perf record -e page-faults -c 10 --call-graph dwarf -p <frontend>` while it
#           caches RSS_KEYS / 10 keys; a page fault is the first touch of a fresh page, and
#           bench/fault-sites.awk names the first caller above the allocator.

source "$(dirname "$0")/lib.sh"

render() {
    jq -r '
    def block(lines): "```", (lines[]), "```";
    "## Profiles",
    "",
    (.cpu // empty |
        "### CPU of the frontend during cache hits of its own keys (pinned)",
        "",
        "`\(.how)`, then `perf report --no-children --sort dso,symbol`. By group (bench/cpu-groups.awk):",
        "",
        block(.groups | map("\(.pct)%  \(.group)")),
        "",
        "Top symbols:",
        "",
        block(.top),
        ""),
    (.faults // empty |
        "### Who touched new memory while a fresh frontend cached \(.keys) keys",
        "",
        "`\(.how)`; bench/fault-sites.awk names, for each sample, the first caller above the allocator:",
        "",
        block(.sites | map("\(.pct)%  \(.site)")),
        "")'
}
[[ ${1:-} != --render ]] || { render; exit; }

(($# > 0)) || set -- cpu faults
need perf:linux-perf
begin

# pct_lines: "  63.2%  some text" lines (the awk scripts' output) as [{pct, text}].
pct_lines() {
    jq -R -s --arg field "$1" '[split("\n")[] | capture("^ *(?<pct>[0-9.]+)% +(?<text>.*)$")
        | {pct: (.pct | tonumber), ($field): .text}]'
}

profiles='{}'
for what; do
    case $what in
        cpu)
            PERF_DATA=$WORK/cpu.data MODES=pinned bash "$BENCH/hits.sh" >/dev/null
            report() {
                perf report -i "$WORK/cpu.data" --stdio --no-children --sort dso,symbol -g none "$@" 2>/dev/null | grep -v '^#' | grep -v '^$'
            }
            groups=$(report --percent-limit 0 | awk -f "$BENCH/cpu-groups.awk" | pct_lines group)
            top=$(report --percent-limit 0.7 | sed 's/[[:space:]-]*$//' | cut -c1-160 | head -30 | jq -R -s 'split("\n") | map(select(. != ""))')
            profiles=$(jq --argjson g "$groups" --argjson t "$top" --arg how "perf record -F 999 -g -p <frontend> during wrk $WRK_ARGS" \
                '.cpu = {how: $how, groups: $g, top: $t}' <<<"$profiles")
            ;;
        faults)
            PERF_DATA=$WORK/faults.data bash "$BENCH/rss.sh" >/dev/null
            sites=$(perf script -i "$WORK/faults.data" -F period,ip,sym 2>/dev/null |
                awk -f "$BENCH/fault-sites.awk" | cut -c1-200 | head -15 | pct_lines site)
            profiles=$(jq --argjson s "$sites" --argjson keys $((${RSS_KEYS:-100000} / 10)) \
                --arg how "perf record -e page-faults -c 10 --call-graph dwarf,8192 -p <frontend>" \
                '.faults = {how: $how, keys: $keys, sites: $s}' <<<"$profiles")
            ;;
        *) die "usage: $0 [cpu] [faults]" ;;
    esac
done
jq '{name: "profiles"} + .' <<<"$profiles"
