#!/usr/bin/env bash
# The main job (README): set up the test bed, build mybake, and build +
# push the hello example for linux/amd64 and linux/arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testbed/setup.sh
cargo build --release --locked --bin mybake
target/release/mybake -C examples/hello plan
target/release/mybake -C examples/hello build --push "$@"
