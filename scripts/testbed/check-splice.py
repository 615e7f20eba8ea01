#!/usr/bin/env python3
"""Check a buildkitd-style gRPC endpoint with a real gRPC client (grpcio).

    check-splice.py [--addr unix:///run/mybake-buildkitd.sock] [--timeout 10]

Calls /moby.buildkit.v1.Control/ListWorkers (empty request) and
/moby.buildkit.v1.Control/Info as raw bytes through grpcio's generic unary
call with identity serializers, decodes the protobuf replies with a tiny
wire-format decoder, prints workers / platforms / BuildKit version, and exits
non-zero on any gRPC error or if no worker comes back.

Needs grpcio: Debian's python3-grpcio (setup.sh installs it) or `pip install
grpcio`.  When the running interpreter lacks it, the script re-executes itself
with /usr/bin/python3 if that one has it.
"""

import argparse
import os
import subprocess
import sys


def ensure_grpc():
    try:
        import grpc  # noqa: F401
        return
    except ImportError:
        pass
    alt = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(alt) and os.path.exists(alt) and not os.environ.get("_CHECK_SPLICE_REEXEC"):
        ok = subprocess.call([alt, "-c", "import grpc"], stderr=subprocess.DEVNULL) == 0
        if ok:
            os.environ["_CHECK_SPLICE_REEXEC"] = "1"
            os.execv(alt, [alt] + sys.argv)
    sys.exit("check-splice: python module 'grpc' not found; apt-get install python3-grpcio (or pip install grpcio)")


# --- minimal protobuf wire-format decoding -------------------------------

def _varint(buf, i):
    shift = 0
    result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """Yield (field_number, wire_type, value) for a serialized message."""
    i = 0
    n = len(buf)
    while i < n:
        key, i = _varint(buf, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        yield fn, wt, v


def decode_version(buf):
    # BuildkitVersion { string package = 1; string version = 2; string revision = 3; }
    out = {}
    for fn, _, v in fields(buf):
        name = {1: "package", 2: "version", 3: "revision"}.get(fn)
        if name:
            out[name] = v.decode()
    return out


def decode_platform(buf):
    # pb.Platform { string Architecture = 1; string OS = 2; string Variant = 3; ... }
    p = {}
    for fn, _, v in fields(buf):
        if fn in (1, 2, 3):
            p[fn] = v.decode()
    s = "%s/%s" % (p.get(2, "?"), p.get(1, "?"))
    if p.get(3):
        s += "/" + p[3]
    return s


def decode_worker(buf):
    # WorkerRecord { string ID = 1; map<string,string> Labels = 2;
    #   repeated pb.Platform platforms = 3; repeated GCPolicy GCPolicy = 4;
    #   BuildkitVersion BuildkitVersion = 5; }
    w = {"id": "", "labels": {}, "platforms": [], "version": {}}
    for fn, wt, v in fields(buf):
        if fn == 1:
            w["id"] = v.decode()
        elif fn == 2:
            k = val = ""
            for efn, _, ev in fields(v):
                if efn == 1:
                    k = ev.decode()
                elif efn == 2:
                    val = ev.decode()
            w["labels"][k] = val
        elif fn == 3:
            w["platforms"].append(decode_platform(v))
        elif fn == 5:
            w["version"] = decode_version(v)
    return w


def main():
    ap = argparse.ArgumentParser(description="check a buildkitd gRPC endpoint (ListWorkers + Info)")
    ap.add_argument("--addr", default="unix:///run/mybake-buildkitd.sock",
                    help="gRPC target: unix:///path or HOST:PORT (default %(default)s)")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("-q", "--quiet", action="store_true", help="print one summary line only")
    args = ap.parse_args()
    ensure_grpc()
    import grpc

    target = args.addr
    if target.startswith("tcp://"):
        target = target[len("tcp://"):]
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
    except grpc.FutureTimeoutError:
        sys.exit("check-splice: could not connect to %s within %.0fs" % (args.addr, args.timeout))

    def call(method, req=b""):
        fn = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return fn(req, timeout=args.timeout)

    try:
        raw = call("/moby.buildkit.v1.Control/ListWorkers")
    except grpc.RpcError as e:
        sys.exit("check-splice: ListWorkers failed: %s %s" % (e.code(), e.details()))
    workers = [decode_worker(v) for fn, _, v in fields(raw) if fn == 1]
    if not workers:
        sys.exit("check-splice: ListWorkers returned no workers (%d bytes)" % len(raw))

    version = {}
    try:
        version = decode_version(next((v for fn, _, v in fields(call("/moby.buildkit.v1.Control/Info")) if fn == 1), b""))
    except grpc.RpcError as e:
        print("check-splice: Info not available: %s %s" % (e.code(), e.details()), file=sys.stderr)

    vs = version.get("version") or (workers[0]["version"].get("version") if workers[0]["version"] else "") or "?"
    if args.quiet:
        print("ok: %s: %d worker(s), buildkit %s, platforms %s"
              % (args.addr, len(workers), vs, ",".join(workers[0]["platforms"])))
        return
    print("ListWorkers via %s: OK (%d bytes, %d worker(s))" % (args.addr, len(raw), len(workers)))
    for w in workers:
        print("  worker %s" % w["id"])
        print("    platforms: %s" % ", ".join(w["platforms"]))
        for k in sorted(w["labels"]):
            print("    label %s=%s" % (k, w["labels"][k]))
        if w["version"]:
            print("    buildkit: %s" % w["version"])
    if version:
        print("Info: buildkit %s" % version)


if __name__ == "__main__":
    main()
