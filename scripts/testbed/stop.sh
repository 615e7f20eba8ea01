#!/usr/bin/env bash
# Stop what scripts/testbed/setup.sh and start-splice.sh started, by the pids
# they recorded in /run/mybake-testbed/ (never by process name): splice,
# registry, dockerd (which stops its containers), then containerd.
# Installed packages, images, registry data and binfmt registrations stay.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_pid splice 10
stop_pid registry 20
stop_pid dockerd 60
stop_pid containerd 30
log "stopped"
