# shellcheck shell=bash disable=SC2034
# Shared paths and helpers for the mybake test bed scripts (sourced, not run).

TESTBED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

STATE_DIR=/var/lib/mybake-testbed        # work dirs (busybox build context, ...)
RUN_DIR=/run/mybake-testbed              # pid files of what we started
LOG_DIR=/var/log/mybake-testbed          # daemon logs
CONF_DIR=/etc/mybake-testbed             # our own config files

CONTAINERD_SOCK=/run/containerd/containerd.sock
DOCKER_SOCK=/var/run/docker.sock
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_DIR=/var/lib/mybake-registry
REGISTRY_CONF="$CONF_DIR/registry.yml"
SPLICE_SOCK=/run/mybake-buildkitd.sock
BUSYBOX_IMAGE=localhost:5000/busybox:latest

# Whatever `docker` is first in PATH (e.g. a newer client in /usr/local/bin)
# talks to our daemon; API version negotiation bridges client/daemon versions.
export DOCKER_HOST="unix://$DOCKER_SOCK"
unset DOCKER_CONTEXT || true

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] ERROR: %s\n' "$*" >&2; exit 1; }

# pid_alive NAME -> prints pid and succeeds when $RUN_DIR/NAME.pid names a live process
pid_alive() {
    local f="$RUN_DIR/$1.pid" pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # a zombie (exited, not yet reaped) is not alive
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    echo "$pid"
}

# start_bg NAME CMD... : start CMD detached (own session, no controlling tty,
# immune to SIGHUP), stdout+stderr appended to $LOG_DIR/NAME.log, pid in
# $RUN_DIR/NAME.pid.  The pid is written by the process itself right before it
# execs CMD, so it is right even when setsid has to fork.
start_bg() {
    local name=$1; shift
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    rm -f "$RUN_DIR/$name.pid"
    printf '\n==== %s starting: %s\n' "$(date -Is)" "$*" >>"$LOG_DIR/$name.log"
    # shellcheck disable=SC2016  # $$ and $@ expand in the child shell
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$RUN_DIR/$name.pid" "$@" \
        >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
    for _ in $(seq 50); do [[ -s $RUN_DIR/$name.pid ]] && break; sleep 0.1; done
    [[ -s $RUN_DIR/$name.pid ]] || die "$name did not start (see $LOG_DIR/$name.log)"
}

# wait_for DESCRIPTION TIMEOUT_S LOGNAME CMD... : poll CMD until it succeeds
wait_for() {
    local what=$1 timeout=$2 logname=$3; shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            if [[ -n $logname && -f $LOG_DIR/$logname.log ]]; then
                log "last lines of $LOG_DIR/$logname.log:"
                tail -n 25 "$LOG_DIR/$logname.log" >&2 || true
            fi
            die "timed out after ${timeout}s waiting for $what"
        fi
        if [[ -n $logname ]] && ! pid_alive "$logname" >/dev/null; then
            log "last lines of $LOG_DIR/$logname.log:"
            tail -n 25 "$LOG_DIR/$logname.log" >&2 || true
            die "$logname exited while waiting for $what"
        fi
        sleep 0.5
    done
}

# stop_pid NAME [TIMEOUT_S] : SIGTERM the process from NAME.pid, SIGKILL after timeout
stop_pid() {
    local name=$1 timeout=${2:-30} pid
    if ! pid=$(pid_alive "$name"); then
        rm -f "$RUN_DIR/$name.pid"
        log "$name: not running (no live pid file)"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name: still alive after ${timeout}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
    rm -f "$RUN_DIR/$name.pid"
}

containerd_up() { [[ -S $CONTAINERD_SOCK ]] && ctr --address "$CONTAINERD_SOCK" --connect-timeout 3s version >/dev/null 2>&1; }
docker_up() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
registry_up() { [[ $(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$REGISTRY_ADDR/v2/" 2>/dev/null) == 200 ]]; }
splice_up() {
    # the socket accepts connections and answers an HTTP/2 preface with a SETTINGS frame
    python3 - "$SPLICE_SOCK" <<'EOF' >/dev/null 2>&1
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
hdr = b""
while len(hdr) < 9:
    c = s.recv(9 - len(hdr))
    if not c: sys.exit(1)
    hdr += c
sys.exit(0 if hdr[3] == 4 else 1)  # frame type 4 = SETTINGS
EOF
}
