#!/usr/bin/env bash
# bench/cli-time.sh — the cli's wall time per `gclab cli cget` of a cached key: process
# start, one HTTP request to a frontend, one answer printed, exit.
#
#   bash bench/cli-time.sh > cli-time.json    (bench/all.sh runs it with the others)
#
# Needs: hyperfine (apt-get install hyperfine), curl, jq. Knobs: CLI_MIN_RUNS=50;
# GCLAB=path to skip the build.
#
# A dbserver and one frontend that is its own only peer hold one key, cached before the
# first timed run, so every cget is a main-cache hit. hyperfine runs it without a shell
# (-N), so the figure is the cli's own, not a shell's start-up.

source "$(dirname "$0")/lib.sh"

render() {
    jq -r '
    "## The cli’s time per cget",
    "",
    "`hyperfine -N --warmup 3 --min-runs \(.settings.min_runs) \"\(.command)\"`: a cache hit on a frontend of its own, process start to exit.",
    "",
    "| runs | mean | ± σ | median | min | max |",
    "|---|---|---|---|---|---|",
    "| \(.runs) | **\(.mean_ms) ms** | \(.stddev_ms) ms | \(.median_ms) ms | \(.min_ms) ms | \(.max_ms) ms |",
    ""'
}
[[ ${1:-} != --render ]] || { render; exit; }

need hyperfine
begin

CLI_MIN_RUNS=${CLI_MIN_RUNS:-50}
DB=127.0.0.1:18083
PEER_PORT=18031
HTTP_PORT=19031
ports_free 18083 $PEER_PORT $HTTP_PORT

say "a dbserver on $DB and a frontend on $HTTP_PORT holding clikey"
start_dbserver "$DB" 0ms
start_frontend $PEER_PORT $PEER_PORT $DB
wait_for "http://127.0.0.1:$HTTP_PORT/stats" "$LAST_PID"
"$GCLAB" cli set --key clikey --value "value of clikey" --db "$DB" >/dev/null
"$GCLAB" cli cget --key clikey --port $HTTP_PORT >/dev/null   # now cached: every timed run hits

command="$GCLAB cli cget --key clikey --port $HTTP_PORT"
say "hyperfine: $command"
hyperfine -N --warmup 3 --min-runs "$CLI_MIN_RUNS" --export-json "$WORK/hyperfine.json" "$command" >&2

# hyperfine stops on a run that exits non-zero, so every timed run was an answered cget.
jqm --argjson min_runs "$CLI_MIN_RUNS" --arg command "gclab cli cget --key clikey --port $HTTP_PORT" 'include "lib";
    .results[0] | def ms: . * 1000 | round(3);
    {name: "cli_time",
     settings: {min_runs: $min_runs},
     command: $command, runs: (.times | length),
     mean_ms: (.mean | ms), stddev_ms: (.stddev | ms), median_ms: (.median | ms),
     min_ms: (.min | ms), max_ms: (.max | ms),
     targets: []}' "$WORK/hyperfine.json"
