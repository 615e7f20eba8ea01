#!/usr/bin/env bash
# The test command (README, .ci/run): set up the real test bed (Docker
# Engine 26.1.5 with the containerd store, registry on 127.0.0.1:5000,
# qemu binfmt, multi-arch busybox base image, /grpc splice socket), then
# run every test of the workspace against it. Idempotent; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testbed/setup.sh
# A one-shot run gains nothing from incremental caches, which cost disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "test.sh: free disk before the build: $(df -h --output=avail . | tail -n 1 | tr -d ' ') (a clean build needs about 1.5 GB)"
cargo test --workspace --locked "$@"
