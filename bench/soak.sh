#!/usr/bin/env bash
# The long run of issue 5: 200,000 loads of distinct keys through one frontend (dbserver
# --delay 0ms), and its open file descriptors after the first 1,000 and at the end.
# The 2013 original leaked a connection per load and stopped after about 20,000.
#
# It is the test `file_descriptors_stay_flat_over_many_loads` (tests/failures.rs), which runs
# 20,000 loads in `cargo test`, run here in release mode with GCLAB_SOAK_LOADS.
set -euo pipefail
cd "$(dirname "$0")/.."
loads=${1:-200000}
GCLAB_SOAK_LOADS=$loads cargo test --release --test failures file_descriptors_stay_flat_over_many_loads \
    -- --nocapture 2>&1 | grep -E "open fds|test result"
