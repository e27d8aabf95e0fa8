#!/usr/bin/env bash
# Builds the release binary and, in bin/, the three program names of the 2013 walkthrough.
# Each name is a link to the same `gclab` binary, which runs the subcommand of its name:
# `bin/cli -port 9002 -cget -key foo` is `gclab cli cget --port 9002 --key foo`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release
# Where cargo put it: target/ unless CARGO_TARGET_DIR (or a cargo config) says otherwise.
# Asking cargo is the one answer that is right in every case.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
binary="$target_dir/release/gclab"
if [ ! -x "$binary" ]; then
    echo "error: cargo reported its target directory as '$target_dir', but $binary is not there" >&2
    exit 1
fi
mkdir -p bin
ln -sfn "$binary" bin/gclab
for program in dbserver frontend cli; do
    ln -sfn gclab "bin/$program"
done
# The links are only done when they run.
if ! version=$(bin/gclab --version); then
    echo "error: bin/gclab -> $binary does not run" >&2
    exit 1
fi
echo "built $version at $binary"
echo "linked bin/gclab to it, and bin/dbserver, bin/frontend and bin/cli to bin/gclab"
