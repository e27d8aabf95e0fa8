#!/usr/bin/env bash
# Builds the release binary and, in bin/, the three program names of the 2013 walkthrough.
# Each name is a link to the same `gclab` binary, which runs the subcommand of its name:
# `bin/cli -port 9002 -cget -key foo` is `gclab cli cget --port 9002 --key foo`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
mkdir -p bin
ln -sf ../target/release/gclab bin/gclab
for program in dbserver frontend cli; do
    ln -sf gclab "bin/$program"
done
echo "built bin/gclab, with bin/dbserver, bin/frontend and bin/cli linked to it"
