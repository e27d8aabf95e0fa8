#!/usr/bin/env bash
# bench/events.sh — what recording trace events costs the hit path: one release binary, its
# frontends with `--events 0` (a: no recording) against the default (b: a ring of 100k
# events), in one run.
#
#   bash bench/events.sh
#
# Two measures, each the median of interleaved rounds (a, b, a, b, ...):
# - bench/ab.sh: wrk's req/s for cache hits, the servers on CPU 0 and wrk on CPU 1, and the
#   frontend's CPU per request;
# - bench/instructions.sh: callgrind's instructions per hit, which the machine's noise
#   (±10% between rounds of wrk here) does not move.
# Prints both JSON objects on stdout; the target is b within 5% of a.

source "$(dirname "$0")/lib.sh"
begin
say "hit path, wrk: a = --events 0, b = recording (the default)"
A_FLAGS="--events 0" B_FLAGS="" bash "$ROOT/bench/ab.sh" "$GCLAB" "$GCLAB"
say "hit path, callgrind: a = --events 0, b = recording (the default)"
A_FLAGS="--events 0" B_FLAGS="" bash "$ROOT/bench/instructions.sh" "$GCLAB" "$GCLAB"
