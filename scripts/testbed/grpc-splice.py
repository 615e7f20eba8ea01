#!/usr/bin/env python3
"""Expose Docker Engine's embedded BuildKit as a plain buildkitd gRPC socket.

Docker Engine serves BuildKit's gRPC API (moby.buildkit.v1.Control, ...) on its
API socket behind an HTTP/1.1 upgrade: `POST /grpc` with `Upgrade: h2c`.  After
the `101 Switching Protocols` response the connection carries raw HTTP/2
(prior knowledge), exactly what a gRPC client speaks to a standalone
buildkitd.  This program listens on a unix socket (and/or a TCP address), and
for every accepted connection opens a new connection to the Docker socket,
performs the upgrade, and then copies bytes in both directions until both
sides are done.

    grpc-splice.py --listen /run/mybake-buildkitd.sock [--docker /var/run/docker.sock]
    grpc-splice.py --tcp 127.0.0.1:1234

Standard library only.  Test-bed tool: no authentication, local use only.
"""

import argparse
import os
import signal
import socket
import stat
import sys
import threading
import time

UPGRADE_REQUEST = (
    b"POST /grpc HTTP/1.1\r\n"
    b"Host: docker\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: h2c\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
MAX_HEADER_BYTES = 64 * 1024
BUF_SIZE = 256 * 1024

_verbose = False
_conn_counter = 0
_conn_lock = threading.Lock()


def log(msg):
    sys.stderr.write("%s grpc-splice: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), msg))
    sys.stderr.flush()


def debug(msg):
    if _verbose:
        log(msg)


class UpgradeError(Exception):
    pass


def upgrade(docker_path, timeout):
    """Connect to the Docker socket and perform the /grpc h2c upgrade.

    Returns (socket, leftover_bytes) where leftover_bytes are any bytes the
    daemon sent after the 101 response headers (normally none: the server
    waits for the client's HTTP/2 preface).
    """
    up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        up.settimeout(timeout)
        up.connect(docker_path)
        up.sendall(UPGRADE_REQUEST)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = up.recv(4096)
            if not chunk:
                raise UpgradeError("docker closed the connection during the upgrade (got %r)" % buf[:200])
            buf += chunk
            if len(buf) > MAX_HEADER_BYTES:
                raise UpgradeError("upgrade response headers too large")
        head, _, rest = buf.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
            raise UpgradeError("docker did not switch protocols: %r" % status_line)
        up.settimeout(None)
        return up, rest
    except BaseException:
        up.close()
        raise


def pump(src, dst, name, state):
    """Copy src -> dst until EOF/error, then half-close dst for writing."""
    total = 0
    try:
        while True:
            try:
                data = src.recv(BUF_SIZE)
            except (ConnectionResetError, OSError) as e:
                debug("%s: recv error: %s" % (name, e))
                state["error"] = True
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except (BrokenPipeError, ConnectionResetError, OSError) as e:
                debug("%s: send error: %s" % (name, e))
                state["error"] = True
                break
            total += len(data)
    finally:
        if state.get("error"):
            # Hard failure: tear both sides down so the other pump wakes up.
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        else:
            # Clean EOF: propagate the half-close, keep the other direction open.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        debug("%s: done after %d bytes" % (name, total))


def handle(client, docker_path, timeout):
    global _conn_counter
    with _conn_lock:
        _conn_counter += 1
        cid = _conn_counter
    try:
        try:
            up, leftover = upgrade(docker_path, timeout)
        except (OSError, UpgradeError) as e:
            log("conn %d: upgrade to %s failed: %s" % (cid, docker_path, e))
            return
        debug("conn %d: upgraded" % cid)
        try:
            if leftover:
                client.sendall(leftover)
            state = {}
            t = threading.Thread(
                target=pump, args=(up, client, "conn %d docker->client" % cid, state), daemon=True
            )
            t.start()
            pump(client, up, "conn %d client->docker" % cid, state)
            t.join()
        finally:
            up.close()
    except Exception as e:  # never let one connection kill the server
        log("conn %d: error: %s" % (cid, e))
    finally:
        client.close()


def unix_listener(path):
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise SystemExit("grpc-splice: %s exists and is not a socket" % path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale socket left by a dead process
        else:
            raise SystemExit("grpc-splice: %s is already being served by another process" % path)
        finally:
            probe.close()
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o660)
    s.listen(128)
    return s


def tcp_listener(addr):
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit("grpc-splice: --tcp wants HOST:PORT, got %r" % addr)
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(128)
    return s


def serve(listener, label, docker_path, timeout):
    log("listening on %s -> %s (POST /grpc, h2c)" % (label, docker_path))
    while True:
        try:
            client, _ = listener.accept()
        except OSError as e:
            log("accept on %s failed: %s" % (label, e))
            time.sleep(0.1)
            continue
        if client.family in (socket.AF_INET, socket.AF_INET6):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(client, docker_path, timeout), daemon=True).start()


def main():
    global _verbose
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", metavar="PATH", help="unix socket to listen on (e.g. /run/mybake-buildkitd.sock)")
    ap.add_argument("--tcp", metavar="HOST:PORT", help="TCP address to listen on (e.g. 127.0.0.1:1234)")
    ap.add_argument("--docker", metavar="PATH", default="/var/run/docker.sock", help="Docker API socket (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds allowed for connect+upgrade (default %(default)s)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    args = ap.parse_args()
    _verbose = args.verbose
    if not args.listen and not args.tcp:
        ap.error("need --listen PATH and/or --tcp HOST:PORT")

    listeners = []
    if args.listen:
        listeners.append((unix_listener(args.listen), "unix:" + args.listen))
    if args.tcp:
        listeners.append((tcp_listener(args.tcp), "tcp:" + args.tcp))

    def on_signal(signum, _frame):
        if args.listen:
            try:
                os.unlink(args.listen)
            except OSError:
                pass
        log("exiting on signal %d" % signum)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = []
    for lst, label in listeners:
        t = threading.Thread(target=serve, args=(lst, label, args.docker, args.timeout), daemon=True)
        t.start()
        threads.append(t)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
