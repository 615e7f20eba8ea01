#!/usr/bin/env bash
# Start scripts/testbed/grpc-splice.py in the background (idempotent):
# Docker Engine's embedded BuildKit as a buildkitd gRPC socket at
# /run/mybake-buildkitd.sock (use it as BUILDKIT_HOST=unix:///run/mybake-buildkitd.sock).
#
#   scripts/testbed/start-splice.sh              # unix socket only
#   SPLICE_TCP=127.0.0.1:1234 scripts/testbed/start-splice.sh   # also on TCP
#   scripts/testbed/start-splice.sh --check      # then run check-splice.py
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check=0
[[ ${1:-} == --check ]] && check=1

[[ -S $DOCKER_SOCK ]] || die "no Docker socket at $DOCKER_SOCK (run scripts/testbed/setup.sh first)"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)

if splice_up; then
    if pid=$(pid_alive splice); then
        log "splice already running (pid $pid) on $SPLICE_SOCK"
    else
        log "$SPLICE_SOCK already answers (not started by us); leaving it alone"
    fi
else
    if pid=$(pid_alive splice); then
        log "splice pid $pid is alive but $SPLICE_SOCK does not answer: restarting it"
        stop_pid splice 10
    fi
    args=(--listen "$SPLICE_SOCK" --docker "$DOCKER_SOCK")
    [[ -n ${SPLICE_TCP:-} ]] && args+=(--tcp "$SPLICE_TCP")
    log "starting grpc-splice on $SPLICE_SOCK${SPLICE_TCP:+ and tcp $SPLICE_TCP}"
    start_bg splice "$PY" -u "$TESTBED_DIR/grpc-splice.py" "${args[@]}"
    wait_for "grpc splice on $SPLICE_SOCK" 20 splice splice_up
fi
echo "BUILDKIT_HOST=unix://$SPLICE_SOCK"
if ((check)); then
    "$PY" "$TESTBED_DIR/check-splice.py" --addr "unix://$SPLICE_SOCK"
fi
