# bench/lib.jq — jq helpers for the bench scripts: `jq -L bench 'include "lib"; ...'`.
# jq does the scripts' arithmetic (medians, ratios), since bash has no floating point.

# The median of an array of numbers: the mean of the middle two for an even count.
def median: sort | if length == 0 then null
    elif length % 2 == 1 then .[(length - 1) / 2]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;

# A number rounded to n decimals.
def round(n): (. * pow(10; n) | round) / pow(10; n);

# One entry of a script's "targets": what is wanted, what was measured (for a human), and
# whether it holds.
def target(what; measured; pass): {what: what, measured: measured, pass: pass};

# "1 round", "3 rounds".
def count(word): "\(.) \(word)\(if . == 1 then "" else "s" end)";
