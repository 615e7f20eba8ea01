#!/bin/sh
# The release pipeline of this example, as a CI job would run it: copy it.
#
#   TAG=1.2.3 examples/release/release.sh
#
# 1. Reproducible: every timestamp (image config, history, layer files) is
#    the commit time of HEAD (SOURCE_DATE_EPOCH, the same as
#    `--source-date-epoch git`, exported so that `verify` rebuilds with the
#    same epoch), so the same commit
#    gives the same image manifests on any machine, cold or warm.
# 2. Pinned: base images come from the digests of the committed mybake.lock
#    (--locked); a lock that misses an image fails the job with exit 2
#    before anything is built. Refresh it on purpose, in a commit of its own:
#        mybake -C examples/release lock --update     # all pins
#        mybake -C examples/release lock --update localhost:5000/busybox:latest
#    (The committed lock pins the test bed's localhost:5000/busybox, which
#    scripts/testbed builds reproducibly; on another registry run
#    `lock --update` first.)
# 3. Recorded: --metadata-file writes each target's index digest and
#    per-platform descriptors (bake's keys) for the next steps (signing,
#    deployment).
# 4. Verified: `mybake verify` rebuilds without cache and compares with what
#    was just published, from the same pins and epoch, per target and
#    platform (exit 1 on a difference,
#    naming the first differing layer and file).
set -eu
cd "$(dirname "$0")"
: "${TAG:?set TAG, e.g. TAG=1.2.3}"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct HEAD)
export SOURCE_DATE_EPOCH
mkdir -p dist
mybake build --push --locked --var TAG="$TAG" --metadata-file dist/metadata.json
mybake verify release --locked --var TAG="$TAG"
