#!/usr/bin/env bash
# Test bed for mybake on a Debian 12 (bookworm) machine, as root, without
# systemd as PID 1 and without Docker Hub.  Idempotent: re-running it when
# everything is up only checks and prints the summary.
#
#   scripts/testbed/setup.sh          # install + start everything, print summary
#   scripts/testbed/stop.sh           # stop what this started
#
# What it sets up:
#   - Debian trixie apt source pinned at priority 100 (nothing upgrades from it
#     unless asked), then from trixie: docker.io (Engine 26.1.5), containerd,
#     docker-buildx; from bookworm: docker-registry (distribution 2.8),
#     qemu-user-static, binfmt-support, python3(-grpcio), curl, jq, socat, openssh-client (ssh-agent for the ssh tests).
#   - containerd + dockerd (containerd image store / snapshotter) started in
#     the background, logs in /var/log/mybake-testbed/.
#   - a registry on 127.0.0.1:5000 (storage /var/lib/mybake-registry, deletes on).
#   - qemu binfmt for aarch64 with the F (fix-binary) flag.
#   - localhost:5000/busybox:latest, a linux/amd64+linux/arm64 image built
#     FROM scratch out of Debian's busybox-static packages.
#   - the gRPC splice /run/mybake-buildkitd.sock (Docker's embedded BuildKit
#     as a buildkitd socket), unless MYBAKE_TESTBED_SPLICE=0.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root"
[[ -r /etc/os-release ]] && . /etc/os-release
[[ ${VERSION_CODENAME:-} == bookworm ]] || log "warning: expected Debian bookworm, found ${PRETTY_NAME:-unknown}"

T0=$SECONDS
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$CONF_DIR"
export DEBIAN_FRONTEND=noninteractive
HOST_ARCH=$(dpkg --print-architecture)

# write_if_changed PATH : stdin -> PATH unless identical; returns 0 if written
write_if_changed() {
    local path=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $path ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        return 1
    fi
    mkdir -p "$(dirname "$path")"
    install -m 0644 "$tmp" "$path"
    rm -f "$tmp"
    return 0
}

# ---------------------------------------------------------------------------
# 1. apt: trixie source (same URIs/keyring as the bookworm one), pinned at 100
# ---------------------------------------------------------------------------
TRIXIE_SOURCES=/etc/apt/sources.list.d/mybake-trixie.sources
TRIXIE_PREFS=/etc/apt/preferences.d/mybake-trixie

bookworm_source() {
    # Prints "URIS<TAB>SIGNED_BY" of the deb822 stanza that carries suite
    # "bookworm" (not -updates/-security), or of a one-line sources.list entry.
    local f out=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f && $f != "$TRIXIE_SOURCES" ]] || continue
        out=$(awk -v RS='' -F'\n' '
            {
                uris = ""; suites = ""; signed = ""; types = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^#/) continue
                    key = tolower(line); sub(/:.*/, "", key)
                    val = line; sub(/^[^:]*:[ \t]*/, "", val)
                    if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "signed-by") signed = val
                    else if (key == "types") types = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                if (enabled == "no" || (" " types " ") !~ / deb /) next
                if ((" " suites " ") ~ / bookworm /) { print uris "\t" signed; exit }
            }' "$f")
        [[ -n $out ]] && { echo "$out"; return 0; }
    done
    # Fallback: classic one-line format.
    local list
    for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $list ]] || continue
        out=$(awk '$1 == "deb" {
                i = 2; opts = ""
                if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
                signed = ""
                if (match(opts, /signed-by=[^] ]*/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
                if ($(i + 1) == "bookworm") { print $i "\t" signed; exit }
            }' "$list")
        [[ -n $out ]] && { echo "$out"; return 0; }
    done
    return 1
}

need_update=0
src=$(bookworm_source) || die "no Debian bookworm apt source found to derive the trixie source from"
uris=${src%%$'\t'*}
signed=${src#*$'\t'}
[[ -n $signed ]] || signed=/usr/share/keyrings/debian-archive-keyring.gpg
{
    echo "# Written by mybake scripts/testbed/setup.sh: Debian trixie, same mirror as bookworm."
    echo "# Pinned to priority 100 by $TRIXIE_PREFS; packages come from here only when asked for."
    echo "Types: deb"
    echo "URIs: $uris"
    echo "Suites: trixie"
    echo "Components: main"
    echo "Architectures: $HOST_ARCH"
    echo "Signed-By: $signed"
} | write_if_changed "$TRIXIE_SOURCES" && { log "wrote $TRIXIE_SOURCES"; need_update=1; }

cat <<'EOF' | write_if_changed "$TRIXIE_PREFS" && { log "wrote $TRIXIE_PREFS"; need_update=1; }
# Written by mybake scripts/testbed/setup.sh: trixie is only used on request
# (apt-get install pkg/trixie); it never upgrades bookworm packages by itself.
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "dpkg --add-architecture arm64 (for busybox-static:arm64)"
    dpkg --add-architecture arm64
    need_update=1
fi

# ---------------------------------------------------------------------------
# 2. packages
# ---------------------------------------------------------------------------
BOOKWORM_PKGS=(docker-registry qemu-user-static binfmt-support python3 python3-grpcio curl jq socat iptables ca-certificates openssh-client)
TRIXIE_PKGS=(docker.io containerd docker-buildx)

pkg_installed() { [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null) == "ii " ]]; }
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
trixie_version() { apt-cache madison "$1" 2>/dev/null | awk -F'|' '$3 ~ / trixie\// { gsub(/ /, "", $2); print $2; exit }'; }
# "pkg=version ..." of the trixie packages as installed now
installed_trixie() { local p; for p in "${TRIXIE_PKGS[@]}"; do printf '%s=%s ' "$p" "$(pkg_version "$p")"; done; }
APT_STAMP=$STATE_DIR/apt-trixie.stamp   # what the last successful install took from trixie

missing=()
for p in "${BOOKWORM_PKGS[@]}" "${TRIXIE_PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
command -v docker >/dev/null 2>&1 || missing+=(docker-cli)
# Installed trixie packages must be the trixie versions (not bookworm's 20.10
# docker.io).  The stamp avoids apt-cache (seconds per call) on re-runs.
if ((${#missing[@]} == 0)) && ((need_update == 0)) && [[ $(cat "$APT_STAMP" 2>/dev/null) != "$(installed_trixie)" ]]; then
    madison=$(apt-cache madison "${TRIXIE_PKGS[@]}" 2>/dev/null || true)
    for p in "${TRIXIE_PKGS[@]}"; do
        tv=$(awk -F'|' -v p="$p" '{ gsub(/ /, "", $1) } $1 == p && $3 ~ / trixie\// { gsub(/ /, "", $2); print $2; exit }' <<<"$madison")
        if [[ -z $tv ]]; then need_update=1; break; fi
        [[ $(pkg_version "$p") == "$tv" ]] || missing+=("$p")
    done
fi

if ((${#missing[@]} > 0 || need_update)); then
    log "apt-get update"
    apt-get update -qq
    docker_io_version=$(trixie_version docker.io)
    [[ -n $docker_io_version ]] || die "trixie has no docker.io (is the trixie source reachable?)"
    case $docker_io_version in
        26.1.5+*) log "trixie docker.io is $docker_io_version (Engine 26.1.5)" ;;
        *) log "WARNING: trixie has docker.io $docker_io_version, not Engine 26.1.5; using it anyway" ;;
    esac
    want=("docker.io=$docker_io_version" containerd/trixie docker-buildx/trixie "${BOOKWORM_PKGS[@]}")
    # Only when no docker client is on PATH at all (the machine may ship a newer one).
    command -v docker >/dev/null 2>&1 || want+=(docker-cli/trixie)
    # No init system: keep package scripts from starting docker/containerd/registry
    # through invoke-rc.d (the registry's stock config would take :5000).
    policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    log "apt-get install ${want[*]}"
    rc=0
    apt-get install -y -q --no-install-recommends "${want[@]}" >"$LOG_DIR/apt-install.log" 2>&1 || rc=$?
    ((policy_created)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        tail -n 30 "$LOG_DIR/apt-install.log" >&2
        die "apt-get install failed (full log: $LOG_DIR/apt-install.log)"
    fi
    from_trixie=$(sed -n 's/^Get:[0-9]* [^ ]* trixie\/main [^ ]* \([^ ]*\) .*/\1/p' "$LOG_DIR/apt-install.log" | sort -u | tr '\n' ' ')
    [[ -z $from_trixie ]] || log "downloaded from trixie: $from_trixie"
fi
for p in "${TRIXIE_PKGS[@]}" "${BOOKWORM_PKGS[@]}"; do pkg_installed "$p" || die "package $p is not installed"; done
installed_trixie >"$APT_STAMP"
command -v docker >/dev/null 2>&1 || die "no docker client on PATH"

# ---------------------------------------------------------------------------
# 5 (early). binfmt for aarch64 -- before dockerd so BuildKit sees linux/arm64
# ---------------------------------------------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
if [[ ! -e $BINFMT/register ]]; then
    log "mounting binfmt_misc at $BINFMT"
    mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc (kernel without CONFIG_BINFMT_MISC?)"
fi
binfmt_ok() { [[ -f $BINFMT/qemu-aarch64 ]] && grep -qx enabled "$BINFMT/qemu-aarch64" && grep -q '^flags:.*F' "$BINFMT/qemu-aarch64"; }
if ! binfmt_ok; then
    if [[ -f $BINFMT/qemu-aarch64 ]]; then
        log "qemu-aarch64 registered without the F flag (or disabled): re-registering"
        echo -1 >"$BINFMT/qemu-aarch64"
    fi
    # Debian's qemu-user-static definition has fix_binary yes -> flags PF.
    update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    [[ -f $BINFMT/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 || true
    if ! binfmt_ok; then
        # Fallback: write the registration ourselves.
        [[ -f $BINFMT/qemu-aarch64 ]] && echo -1 >"$BINFMT/qemu-aarch64"
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' >"$BINFMT/register"
    fi
    binfmt_ok || die "could not register qemu-aarch64 with binfmt_misc"
    log "binfmt qemu-aarch64 registered ($(grep '^flags' "$BINFMT/qemu-aarch64"))"
fi

# ---------------------------------------------------------------------------
# 3. containerd + dockerd with the containerd image store
# ---------------------------------------------------------------------------
DAEMON_JSON=/etc/docker/daemon.json
mkdir -p /etc/docker
if [[ -s $DAEMON_JSON ]]; then
    jq '.features["containerd-snapshotter"] = true' "$DAEMON_JSON" >"$STATE_DIR/daemon.json.new" \
        || die "$DAEMON_JSON is not valid JSON"
else
    echo '{"features":{"containerd-snapshotter":true}}' | jq . >"$STATE_DIR/daemon.json.new"
fi
daemon_json_changed=0
if write_if_changed "$DAEMON_JSON" <"$STATE_DIR/daemon.json.new"; then
    log "wrote $DAEMON_JSON"
    daemon_json_changed=1
fi
rm -f "$STATE_DIR/daemon.json.new"

if ! containerd_up; then
    log "starting containerd"
    start_bg containerd containerd
    wait_for "containerd on $CONTAINERD_SOCK" 30 containerd containerd_up
fi

snapshotter_ok() { docker info --format '{{json .DriverStatus}}' 2>/dev/null | grep -q 'io.containerd.snapshotter.v1'; }
if docker_up && { ((daemon_json_changed)) || ! snapshotter_ok; }; then
    if pid_alive dockerd >/dev/null; then
        log "dockerd config changed or snapshotter off: restarting our dockerd"
        stop_pid dockerd 60
    else
        snapshotter_ok || die "a dockerd we did not start is running without the containerd snapshotter; stop it and re-run"
    fi
fi
if ! docker_up; then
    log "starting dockerd"
    start_bg dockerd dockerd --containerd="$CONTAINERD_SOCK" --host="unix://$DOCKER_SOCK"
    wait_for "dockerd ('docker info') on $DOCKER_SOCK" 90 dockerd docker_up
fi
snapshotter_ok || {
    docker info 2>&1 | sed -n '/Storage Driver/,/Logging Driver/p' >&2
    die "docker info does not report the containerd snapshotter (driver-type io.containerd.snapshotter.v1)"
}

# ---------------------------------------------------------------------------
# 4. registry on 127.0.0.1:5000
# ---------------------------------------------------------------------------
mkdir -p "$REGISTRY_DIR"
reg_conf_changed=0
if write_if_changed "$REGISTRY_CONF" <<EOF; then log "wrote $REGISTRY_CONF"; reg_conf_changed=1; fi
# mybake test-bed registry (docker-registry / distribution 2.8), written by setup.sh
version: 0.1
log:
  level: info
  fields:
    service: mybake-registry
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR
  delete:
    enabled: true
  # no blobdescriptor cache: it can serve stale answers after deletes
http:
  addr: $REGISTRY_ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
if ((reg_conf_changed)) && registry_up && pid_alive registry >/dev/null; then
    log "registry config changed: restarting our registry"
    stop_pid registry 20
fi
if ! registry_up; then
    log "starting docker-registry on $REGISTRY_ADDR"
    start_bg registry docker-registry serve "$REGISTRY_CONF"
    wait_for "registry (GET http://$REGISTRY_ADDR/v2/)" 30 registry registry_up
fi

# ---------------------------------------------------------------------------
# 6. busybox binaries (also the binfmt check of step 5) and the base image
# ---------------------------------------------------------------------------
BB_DIR=$STATE_DIR/busybox
CTX=$BB_DIR/context
mkdir -p "$BB_DIR/debs" "$CTX"
for arch in amd64 arm64; do
    [[ -x $CTX/busybox-$arch ]] && continue
    log "fetching busybox-static:$arch"
    rm -f "$BB_DIR"/debs/busybox-static_*_"$arch".deb
    (cd "$BB_DIR/debs" && apt-get -q -o APT::Sandbox::User=root download "busybox-static:$arch" >/dev/null) \
        || die "apt-get download busybox-static:$arch failed"
    rm -rf "$BB_DIR/x-$arch"
    dpkg-deb -x "$BB_DIR"/debs/busybox-static_*_"$arch".deb "$BB_DIR/x-$arch"
    install -m 0755 "$BB_DIR/x-$arch/bin/busybox" "$CTX/busybox-$arch"
    rm -rf "$BB_DIR/x-$arch"
done
[[ $("$CTX/busybox-amd64" uname -m) == x86_64 ]] || die "busybox-amd64 uname -m did not print x86_64"
arm_uname=$("$CTX/busybox-arm64" uname -m 2>&1) || true
[[ $arm_uname == aarch64 ]] || die "arm64 binfmt check failed: busybox-arm64 uname -m printed '$arm_uname'"

registry_platforms() {
    curl -fsS -m 10 \
        -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json' \
        "http://$REGISTRY_ADDR/v2/busybox/manifests/latest" 2>/dev/null \
        | jq -r '.manifests[]? | .platform | select(. != null) | "\(.os)/\(.architecture)"' 2>/dev/null | sort -u | tr '\n' ' '
}
image_ok() { local p; p=$(registry_platforms); [[ $p == *linux/amd64* && $p == *linux/arm64* ]]; }

# The image is built reproducibly (every timestamp is BUSYBOX_EPOCH), so
# every test bed with the same busybox-static package has the same digests
# and the committed examples/release/mybake.lock pins them. The stamp names
# that recipe: an image built before it (or by an older recipe) is rebuilt.
BUSYBOX_EPOCH=1700000000
BB_STAMP=$BB_DIR/image.stamp
BB_RECIPE="reproducible-1 epoch=$BUSYBOX_EPOCH"
if image_ok && [[ $(cat "$BB_STAMP" 2>/dev/null) == "$BB_RECIPE" ]]; then
    log "$BUSYBOX_IMAGE already in the registry with linux/amd64 + linux/arm64"
else
    log "building $BUSYBOX_IMAGE (linux/amd64, linux/arm64), reproducibly"
    rm -f "$BB_STAMP"
    umask 022   # the rootfs modes below do not depend on the caller's umask
    # rootfs/: applet symlinks (no RUN step needed) and a few basics.
    rm -rf "$CTX/rootfs"
    mkdir -p "$CTX/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root}
    chmod 1777 "$CTX/rootfs/tmp"
    chmod 0700 "$CTX/rootfs/root"
    while read -r applet; do
        [[ -n $applet && $applet != bin/busybox ]] || continue
        [[ -e $CTX/rootfs/$applet || -L $CTX/rootfs/$applet ]] && continue
        mkdir -p "$CTX/rootfs/$(dirname "$applet")"
        ln -s /bin/busybox "$CTX/rootfs/$applet"
    done < <("$CTX/busybox-amd64" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$CTX/rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$CTX/rootfs/etc/group"
    cat >"$CTX/Dockerfile" <<'EOF'
# mybake test-bed base image: Debian's busybox-static, no Docker Hub needed.
FROM scratch
ARG TARGETARCH
COPY busybox-${TARGETARCH} /bin/busybox
COPY rootfs/ /
ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/sh"]
EOF
    cat >"$CTX/.dockerignore" <<'EOF'
Dockerfile
EOF
    # Same timestamps everywhere: the context's files, and (SOURCE_DATE_EPOCH
    # with rewrite-timestamp, BuildKit >= 0.13) the image config, history
    # and layer entries.
    find "$CTX" -exec touch -h -d "@$BUSYBOX_EPOCH" {} +
    SOURCE_DATE_EPOCH=$BUSYBOX_EPOCH docker buildx build --builder default \
        --platform linux/amd64,linux/arm64 \
        --provenance=false --sbom=false --no-cache \
        --label "org.opencontainers.image.description=mybake test-bed busybox (Debian busybox-static)" \
        --output "type=image,name=$BUSYBOX_IMAGE,push=true,store=false,rewrite-timestamp=true" \
        "$CTX" >"$LOG_DIR/busybox-build.log" 2>&1 || {
        tail -n 30 "$LOG_DIR/busybox-build.log" >&2
        die "docker buildx build failed (full log: $LOG_DIR/busybox-build.log)"
    }
    image_ok || die "pushed $BUSYBOX_IMAGE but the registry index lacks linux/amd64 + linux/arm64 ($(registry_platforms))"
    echo "$BB_RECIPE" >"$BB_STAMP"
    log "pushed $BUSYBOX_IMAGE"
fi

# ---------------------------------------------------------------------------
# gRPC splice (Docker's embedded BuildKit as a buildkitd socket)
# ---------------------------------------------------------------------------
if [[ ${MYBAKE_TESTBED_SPLICE:-1} != 0 ]]; then
    "$TESTBED_DIR/start-splice.sh" >/dev/null
fi

# ---------------------------------------------------------------------------
# 7. summary
# ---------------------------------------------------------------------------
server_version=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')
client_version=$(docker version --format '{{.Client.Version}}' 2>/dev/null || echo '?')
buildkit_version=$(docker buildx inspect default 2>/dev/null | awk -F': *' '/^BuildKit version/ {print $2; exit}')
builder_platforms=$(docker buildx inspect default 2>/dev/null | awk -F': *' '/^Platforms/ {print $2; exit}')
containerd_version=$(ctr --address "$CONTAINERD_SOCK" --connect-timeout 3s version 2>/dev/null | awk '/^Server:/ {s=1} s && /Version:/ {print $2; exit}')
cat <<EOF

mybake test bed ready ($((SECONDS - T0))s)
  docker server   : $server_version (package docker.io $(pkg_version docker.io)); client $client_version at $(command -v docker)
  snapshotter     : $(docker info --format '{{.Driver}} {{json .DriverStatus}}' 2>/dev/null)
  buildkit        : ${buildkit_version:-?} (embedded in dockerd); platforms: ${builder_platforms:-?}
  buildx          : $(docker buildx version 2>/dev/null | awk '{print $2}') (package docker-buildx $(pkg_version docker-buildx))
  containerd      : ${containerd_version:-?} (package containerd $(pkg_version containerd)); runc $(pkg_version runc)
  registry        : $(registry_up && echo "up at http://$REGISTRY_ADDR" || echo DOWN) ($(docker-registry --version 2>/dev/null | awk '{print $3}'), storage $REGISTRY_DIR)
  binfmt aarch64  : $(binfmt_ok && echo "enabled, $(grep '^flags' "$BINFMT/qemu-aarch64"), $(grep '^interpreter' "$BINFMT/qemu-aarch64" | cut -d' ' -f2)" || echo MISSING); qemu $(pkg_version qemu-user-static)
  base image      : $BUSYBOX_IMAGE [$(registry_platforms | sed 's/ *$//')]
  grpc splice     : $(splice_up && echo "unix://$SPLICE_SOCK" || echo "not running")
  logs            : $LOG_DIR/   pids: $RUN_DIR/
EOF
