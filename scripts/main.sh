#!/usr/bin/env bash
# The main job (README): set up the test bed, build mybake, and build +
# push the hello example for linux/amd64 and linux/arm64 (one OCI index,
# tagged localhost:5000/hello:dev), then run it on both platforms.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testbed/setup.sh
cargo build --release --locked --bin mybake
target/release/mybake -C examples/hello plan
target/release/mybake -C examples/hello build --push "$@"
for p in linux/amd64 linux/arm64; do
    docker run --rm --pull always --platform "$p" localhost:5000/hello:dev
done
