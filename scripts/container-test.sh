#!/usr/bin/env bash
# Builds the kvstore image with Podman and runs it for real:
#
#   scripts/container-test.sh BUILD_DIR [--clean]
#
# 1. The base image. The Dockerfile's FROM (debian:12-slim) cannot be pulled
#    on machines that reach only Debian's archive, so it is made here: a
#    Debian 12 root file system by `debootstrap --variant=minbase bookworm`
#    from the archive in the machine's own apt sources, `podman import`ed
#    under that name (labelled org.kvstore.base). It is kept: later runs
#    find it (`podman image exists`) and skip this step.
# 2. `podman build -t kvstore` from the repository (layers cached between
#    runs; the source and compile layers of earlier runs are removed).
# 3. Three nodes from the image on a network of their own, each at a fixed
#    address on it: kvctl (BUILD_DIR/tools/kvctl) puts and gets from the
#    host, every node serves the value, /readyz and /metrics answer at the
#    client port + 3000, the nodes run as the unprivileged user and raise
#    their threads' priority (or say they cannot: below); kvmon from the
#    image (--once --json, and live on a terminal) and kvmon --once from the
#    host (BUILD_DIR/monitor/kvmon) see three nodes up and one leader.
# 4. docker-compose.yml with podman-compose: three nodes up and ready on the
#    host's published ports, a write inside the compose network (names
#    resolve) read from every node through the published ports, the leader
#    killed with SIGKILL and a new one elected, the killed node started
#    again and serving the value; then `down -v`. The file runs unchanged
#    where the runtime grants its nice limit; elsewhere (no
#    CAP_SYS_RESOURCE, as on this repository's machines) with an override
#    of its ulimits, and the nodes must say that they run at one priority.
#
# Everything it starts (containers, networks, volumes, temp dirs) is removed
# at exit, also after a failure or a signal. The images stay for the next
# run (base image, kvstore:latest, the dependency layers); --clean removes
# every image it made or derived from the base at exit (the next run is cold).
#
# Podman runs as root with a containers.conf of its own (CONTAINERS_CONF:
# nothing under /etc changes): the runc runtime (crun refuses a hybrid
# cgroup layout) and default ulimits within the host's hard limits (Podman's
# defaults exceed them and setrlimit fails). scripts/install-deps.sh
# installs what it needs; this script installs nothing.
#
# Exit codes, as test/lib/harness.py: 0 passed, 1 kvstore failed a check
# (the image, the Dockerfile, the compose file or kvstore in them), 99 the
# harness broke (Podman, debootstrap, the network to the Debian archive, a
# port taken on the host, a bug of this script). The line saying which
# starts with "TEST FAILURE:" or "HARNESS FAILURE:", and is the last line
# of the output (under ctest, test/lib/run_test puts its verdict first).
#
# Environment:
#   KV_DEBIAN_MIRROR   the archive for debootstrap (default: the first URI
#                      serving bookworm in the apt sources)
set -Eeuo pipefail # -E: the ERR trap below holds in functions too

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS_EXIT=99
BASE_IMAGE=debian:12-slim # the Dockerfile's FROM
BASE_LABEL=org.kvstore.base
IMAGE=kvstore # the Dockerfile's own example tag; docker-compose.yml's image
RUN_ID=kvct$$
NET=$RUN_ID
PROJECT=$RUN_ID # the compose project
START=$SECONDS

usage() {
  echo "usage: $0 BUILD_DIR [--clean]" >&2
  exit 2
}
BUILD_DIR=""
CLEAN=0
for arg in "$@"; do
  case "$arg" in
    --clean) CLEAN=1 ;;
    -h | --help) usage ;;
    -*) usage ;;
    *)
      [ -z "$BUILD_DIR" ] || usage
      BUILD_DIR=$arg
      ;;
  esac
done
[ -n "$BUILD_DIR" ] || usage
KVCTL=$BUILD_DIR/tools/kvctl
KVMON=$BUILD_DIR/monitor/kvmon

say() { printf '[%4ds] %s\n' $((SECONDS - START)) "$*"; }
FAILED=""
harness_fail() {
  FAILED="HARNESS FAILURE: $* (the container harness broke, not kvstore)"
  printf '%s\n' "$FAILED" >&2
  exit "$HARNESS_EXIT"
}
test_fail() {
  FAILED="TEST FAILURE: $*"
  printf '%s\n' "$FAILED" >&2
  exit 1
}

# Polls CMD until it succeeds or TIMEOUT seconds pass: returns 1 then.
wait_for() {
  local timeout=$1
  shift
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# ---- cleanup -----------------------------------------------------------------
TMP=""
ROOTFS=""
cleanup() {
  local code=$?
  trap - EXIT INT TERM ERR
  set +e
  say "cleaning up"
  local ids
  ids=$(podman ps -aq --filter "label=org.kvstore.test-run=$RUN_ID" 2>/dev/null)
  ids+=" "$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null)
  # shellcheck disable=SC2086 # word splitting of the id lists is wanted
  [ -z "${ids// /}" ] || podman rm -f -v -t 0 $ids >/dev/null 2>&1
  ids=$(podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1
  ids=$(podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || podman network rm -f $ids >/dev/null 2>&1
  podman network rm -f "$NET" >/dev/null 2>&1
  # An interrupted build leaves its working containers (buildah's, listed
  # with --external only): those that were not there before it.
  if [ -f "$TMP/containers-before" ]; then
    ids=$(podman ps -aq --external --no-trunc 2>/dev/null | sort | comm -13 "$TMP/containers-before" -)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1
  fi
  if [ -n "$ROOTFS" ] && [ -d "$ROOTFS" ]; then
    # debootstrap mounts /proc and /sys in the target: never remove through them.
    awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$ROOTFS"
  fi
  if [ "$CLEAN" = 1 ]; then
    say "--clean: removing every image made from the base image, and the base image"
    podman rmi -f "$IMAGE" >/dev/null 2>&1
    remove_images "label=$BASE_LABEL"
  else
    prune_stale_layers
  fi
  [ -z "$TMP" ] || rm -rf "$TMP"
  say "done in $((SECONDS - START))s"
  [ -z "$FAILED" ] || printf '%s\n' "$FAILED"
  exit "$code"
}
trap cleanup EXIT
# A command failing where no check expects it is a bug of this script.
trap 'harness_fail "line $LINENO: \"$BASH_COMMAND\" failed"' ERR
trap 'FAILED=${FAILED:-"TEST FAILURE: interrupted by a signal"}; exit 1' INT TERM

# Removes the images matching FILTER, children before parents.
remove_images() {
  local filter=$1 ids
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    ids=$(podman images -aq --no-trunc --filter "$filter" 2>/dev/null | sort -u)
    [ -n "$ids" ] || return 0
    # shellcheck disable=SC2086
    podman rmi -f $ids >/dev/null 2>&1 || true
  done
}

# Every build leaves layers of its own (the copied source, hundreds of MB of
# objects, the binaries): once a build succeeded, the untagged images made
# from the base image that it neither made nor reused are an earlier run's,
# and go. What this build used stays: the next build reuses its dependency
# layers.
prune_stale_layers() {
  [ -s "$TMP/build-ids" ] || return 0
  local id removed
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    removed=0
    while read -r id tag; do
      [ "$tag" = "<none>:<none>" ] || continue
      grep -qx "${id:0:11}" "$TMP/build-ids" && continue
      podman rmi "$id" >/dev/null 2>&1 && removed=1
    done < <(podman images -a --no-trunc --filter "label=$BASE_LABEL" \
      --format '{{.ID}} {{.Repository}}:{{.Tag}}' 2>/dev/null | sed 's/^sha256://')
    [ "$removed" = 1 ] || return 0
  done
}

# ---- the harness: tools, Podman's configuration, the base image -------------
for tool in podman runc podman-compose debootstrap curl python3; do
  command -v "$tool" >/dev/null || harness_fail "$tool is not installed (scripts/install-deps.sh installs it)"
done
if [ ! -x "$KVCTL" ] || [ ! -x "$KVMON" ]; then
  harness_fail "no tools/kvctl or monitor/kvmon under the build dir '$BUILD_DIR' (build it first)"
fi
[ "$(id -u)" -eq 0 ] || harness_fail "runs Podman as root; run it as root"

TMP=$(mktemp -d /var/tmp/kvstore-container-test.XXXXXX)
# What Podman and debootstrap leave in a temp dir (an interrupted build's
# bundles) goes with ours.
mkdir "$TMP/tmp"
export TMPDIR=$TMP/tmp
# The host's hard limits: containers get no more (a higher default makes
# runc's setrlimit fail with EPERM).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[ "$nofile" != unlimited ] || nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
cat >"$TMP/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$TMP/containers.conf
podman info >"$TMP/podman-info" 2>&1 || harness_fail "podman info fails: $(tail -n 3 "$TMP/podman-info")"

# The first URI of a "deb" source serving bookworm in the apt sources.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^[ \t]*#/ || index($i, ":") == 0) continue
          key = tolower(substr($i, 1, index($i, ":") - 1))
          val = substr($i, index($i, ":") + 1)
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "enabled") enabled = val
        }
        if ((" " types " ") ~ / deb / && (" " suites " ") ~ / bookworm / && enabled !~ /no/) {
          split(uris, u, " ")
          print u[1]
          exit
        }
      }' "$f"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | # some may not exist
    awk '$1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == "bookworm") { print $i; exit }
    }' || true
}

if podman image exists "$BASE_IMAGE"; then
  say "base image $BASE_IMAGE present: kept from an earlier run"
else
  mirror=${KV_DEBIAN_MIRROR:-$(debian_mirror | awk 'NR == 1')}
  [ -n "$mirror" ] || harness_fail "no bookworm archive in the apt sources (set KV_DEBIAN_MIRROR)"
  curl -fsS --max-time 30 -o /dev/null "${mirror%/}/dists/bookworm/InRelease" ||
    harness_fail "the Debian archive $mirror does not answer"
  say "making $BASE_IMAGE: debootstrap --variant=minbase bookworm from $mirror"
  ROOTFS=$TMP/rootfs
  debootstrap --variant=minbase bookworm "$ROOTFS" "$mirror" >"$TMP/debootstrap.log" 2>&1 ||
    harness_fail "debootstrap failed: $(tail -n 5 "$TMP/debootstrap.log")"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar --numeric-owner -C "$ROOTFS" -c . |
    podman import --change "LABEL $BASE_LABEL=debootstrap-minbase-bookworm" \
      --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >"$TMP/import.log" 2>&1 ||
    harness_fail "podman import failed: $(tail -n 3 "$TMP/import.log")"
  rm -rf --one-file-system "$ROOTFS"
  ROOTFS=""
  say "base image $BASE_IMAGE imported"
fi

# The runtime, with the options the nodes and the compose file use: a
# failure here is Podman's (cgroups, ulimits, networking), not kvstore's.
podman network create --label "org.kvstore.test-run=$RUN_ID" "$NET" >/dev/null 2>"$TMP/net.log" ||
  harness_fail "podman network create failed: $(cat "$TMP/net.log")"
podman run --rm --label "org.kvstore.test-run=$RUN_ID" --network "$NET" --init \
  "$BASE_IMAGE" true >"$TMP/smoke.log" 2>&1 ||
  harness_fail "a container of the bare base image does not run: $(tail -n 3 "$TMP/smoke.log")"
# docker-compose.yml gives the nodes a nice limit of 30 (ulimits), so that
# they raise their loop and WAL threads' priority. A runtime can grant it
# only where it may raise a hard limit (CAP_SYS_RESOURCE, or a host hard
# limit of 30 already); elsewhere (rootless Podman, sandboxes without
# CAP_SYS_RESOURCE) no container with it starts: runc's setrlimit fails with
# EPERM. Any --ulimit also makes Podman drop containers.conf's
# default_ulimits for its own (nofile 1048576, nproc 4194304), as the
# compose file's does. Such a host runs the nodes without the limit: they
# must then start all the same and say that they run at one priority.
has_cap() { # capability number N is in this process's effective set
  local eff
  eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
  (((0x$eff >> $1) & 1))
}
if podman run --rm --label "org.kvstore.test-run=$RUN_ID" --ulimit nice=30 "$BASE_IMAGE" true \
  >"$TMP/nice.log" 2>&1; then
  NICE_OK=1
  nice_args=(--ulimit nice=30)
  say "the runtime grants the compose file's nice limit (ulimits: nice: 30)"
else
  NICE_OK=0
  nice_args=()
  podman run --rm --label "org.kvstore.test-run=$RUN_ID" --ulimit nice=30 \
    --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" "$BASE_IMAGE" true \
    >"$TMP/nice2.log" 2>&1 || true
  say "NOTE: this host's runtime cannot grant the compose file's nice limit of 30 (host hard" \
    "limit $(ulimit -He), CAP_SYS_RESOURCE $(has_cap 24 && echo present || echo absent)):" \
    "with --ulimit nice=30: $(grep -o 'error setting rlimit type [0-9]*' "$TMP/nice.log" | head -n 1);" \
    "with nofile and nproc within the host's limits too:" \
    "$(grep -o 'error setting rlimit type [0-9]*' "$TMP/nice2.log" | head -n 1) (7 nofile, 6 nproc," \
    "13 nice). The nodes run without it; docker-compose.yml runs with an override of its ulimits."
fi
# The nodes' log line when they cannot raise their threads' priority.
check_priority() { # NAME CONTAINER
  local logs
  logs=$(podman logs "$2" 2>&1)
  if grep -q 'cannot raise the priority' <<<"$logs"; then
    [ "$NICE_OK" = 0 ] || test_fail "$1 cannot raise its threads' priority under a nice limit of 30"
  else
    [ "$NICE_OK" = 1 ] || test_fail "$1 does not say it runs at one priority without a nice limit"
  fi
}

# ---- the image ----------------------------------------------------------------
say "podman build -t $IMAGE $ROOT"
build_start=$SECONDS
podman ps -aq --external --no-trunc | sort >"$TMP/containers-before"
if ! podman build --layers -t "$IMAGE" "$ROOT" >"$TMP/build.log" 2>&1; then
  tail -n 40 "$TMP/build.log"
  if grep -qE 'Temporary failure resolving|Could not resolve|Failed to fetch|Unable to fetch|Network is unreachable' \
    "$TMP/build.log"; then
    harness_fail "podman build could not reach the Debian archive"
  fi
  test_fail "podman build failed (the Dockerfile or the code; its log above)"
fi
# The images this build made or reused ("--> ID", "--> Using cache ID"): kept.
awk '$1 == "-->" && $NF ~ /^[0-9a-f]+$/ { print substr($NF, 1, 11) }' "$TMP/build.log" |
  sort -u >"$TMP/build-ids"
say "image built in $((SECONDS - build_start))s"

# ---- three nodes from the image, driven from the host ------------------------
subnet=$(podman network inspect --format '{{range .Subnets}}{{.Subnet}} {{end}}' "$NET" |
  awk '{ print $1 }')
case "$subnet" in
  */24) prefix=${subnet%.*/24} ;;
  *) harness_fail "network $NET has subnet '$subnet', not a /24" ;;
esac
ip_of() { echo "$prefix.$((10 + $1))"; }
peers="1=$(ip_of 1):8080,2=$(ip_of 2):8080,3=$(ip_of 3):8080"
endpoints="$(ip_of 1):8080,$(ip_of 2):8080,$(ip_of 3):8080"

node_logs() {
  local c
  for c in "$@"; do
    echo "---- podman logs $c (last 20 lines)"
    podman logs "$c" 2>&1 | tail -n 20 || true
  done
}
ready() { [ "$(curl -s --max-time 2 "http://$1/readyz")" = ready ]; }

say "starting three nodes on $NET ($subnet)"
for i in 1 2 3; do
  set +e
  podman run -d --name "$RUN_ID-node$i" --label "org.kvstore.test-run=$RUN_ID" \
    --network "$NET" --ip "$(ip_of "$i")" --hostname "node$i" --init "${nice_args[@]}" \
    "$IMAGE" --id "$i" --peers "$peers" --listen 0.0.0.0 --insecure \
    --data-dir /var/lib/kvstore/data >"$TMP/run.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 125 ]; then
    harness_fail "podman run failed: $(tail -n 3 "$TMP/run.log")"
  elif [ "$rc" -ne 0 ]; then
    test_fail "the image's kvstore does not start (podman run: exit $rc): $(tail -n 3 "$TMP/run.log")"
  fi
done
for i in 1 2 3; do
  if ! wait_for 90 ready "$(ip_of "$i"):11080"; then
    node_logs "$RUN_ID-node1" "$RUN_ID-node2" "$RUN_ID-node3"
    test_fail "node $i not ready (GET /readyz at client port + 3000) within 90s"
  fi
done
say "three nodes ready (/readyz)"

out=$("$KVCTL" --endpoints "$endpoints" put container-key from-the-host 2>&1) ||
  test_fail "kvctl put from the host: $out"
[ "$out" = OK ] || test_fail "kvctl put answered '$out', not OK"
out=$("$KVCTL" --endpoints "$endpoints" get container-key 2>&1) ||
  test_fail "kvctl get from the host: $out"
[ "$out" = from-the-host ] || test_fail "kvctl get answered '$out', not from-the-host"
stale_is() { [ "$("$KVCTL" --endpoints "$1" --timeout 1000 get "$2" --stale 2>/dev/null)" = "$3" ]; }
for i in 1 2 3; do
  wait_for 30 stale_is "$(ip_of "$i"):8080" container-key from-the-host ||
    test_fail "node $i does not serve the value written through the leader (get --stale)"
done
say "kvctl from the host: put, get, and every node serves the value"

metrics=$(curl -fsS --max-time 5 "http://$(ip_of 1):11080/metrics") ||
  test_fail "no /metrics at client port + 3000"
grep -q '^kvstore_up 1' <<<"$metrics" || test_fail "/metrics lacks kvstore_up 1"
uid=$(podman exec "$RUN_ID-node1" id -u) || harness_fail "podman exec failed"
[ "$uid" = 10001 ] || test_fail "the node runs as uid $uid, not the image's user kvstore (10001)"
for i in 1 2 3; do
  check_priority "node $i" "$RUN_ID-node$i"
done
say "/metrics answers, the node runs as kvstore (uid 10001), its priority as the nice limit allows"

# The monitor from the image: one table as JSON, then live on a terminal.
# The nodes run sharded (the default): the table lists them and the shards,
# each with a leader once every group has elected.
kvmon_json_says_ready() {
  podman run --rm --label "org.kvstore.test-run=$RUN_ID" --network "$NET" --entrypoint kvmon \
    "$IMAGE" --endpoints "$endpoints" --once --json >"$TMP/kvmon.json" 2>"$TMP/kvmon.err" || return 1
  python3 - "$TMP/kvmon.json" <<'EOF'
import json, sys
out = json.load(open(sys.argv[1]))
rows = out["nodes"] if isinstance(out, dict) else out
assert sorted(r["id"] for r in rows) == [1, 2, 3], rows
assert all(r["up"] for r in rows), rows
assert sum(r["role"] == "leader" for r in rows) == 1, rows
assert not isinstance(out, dict) or all(s["leader"] for s in out["shards"]), out
# P99 and FSYNC99 come from each node's /metrics: the HTTP port is reachable.
assert all(r["fsync_p99_ms"] > 0 for r in rows), rows
EOF
}
wait_for 60 kvmon_json_says_ready ||
  test_fail "kvmon --once --json from the image: $(cat "$TMP/kvmon.json") $(tail -n 3 "$TMP/kvmon.err")"
out=$("$KVMON" --endpoints "$endpoints" --once 2>&1) || test_fail "kvmon --once from the host: $out"
[ "$(grep -c ' up$' <<<"$out")" = 3 ] || test_fail "kvmon --once from the host shows not 3 nodes up: $out"
podman run -d -t --name "$RUN_ID-kvmon" --label "org.kvstore.test-run=$RUN_ID" --network "$NET" \
  --entrypoint kvmon "$IMAGE" --endpoints "$endpoints" >/dev/null 2>"$TMP/run.log" ||
  harness_fail "podman run of the live kvmon failed: $(tail -n 3 "$TMP/run.log")"
live_shows_leader() {
  local screen
  screen=$(podman logs "$RUN_ID-kvmon" 2>&1)
  grep -q leader <<<"$screen"
}
wait_for 30 live_shows_leader ||
  test_fail "the live kvmon in a container shows no leader: $(podman logs "$RUN_ID-kvmon" 2>&1 | tail -c 600)"
echo "$out"
say "kvmon from the image (--once --json, live) and from the host (--once): 3 nodes up, 1 leader"
podman rm -f -v -t 0 "$RUN_ID-kvmon" "$RUN_ID-node1" "$RUN_ID-node2" "$RUN_ID-node3" >/dev/null
podman network rm -f "$NET" >/dev/null

# ---- docker-compose.yml with podman-compose -----------------------------------
# It publishes fixed ports on the host's loopback.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in 8080 8081 8082 10080 10081 10082 11080 11081 11082; do
  ! port_taken "$p" || harness_fail "port $p on the host is taken: docker-compose.yml publishes it"
done
compose=(podman-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml")
if [ "$NICE_OK" = 0 ]; then
  # The nice limit this host cannot grant down to its own (0), and the
  # limits Podman would then pick itself within the host's.
  {
    echo "services:"
    for i in 1 2 3; do
      echo "  node$i:"
      echo "    ulimits: {nice: 0, nofile: $nofile, nproc: $nproc}"
    done
  } >"$TMP/compose-override.yml"
  compose+=(-f "$TMP/compose-override.yml")
fi
say "${compose[*]} up -d (uses the image just built)"
"${compose[@]}" up -d >"$TMP/compose-up.log" 2>&1 || {
  cat "$TMP/compose-up.log"
  test_fail "podman-compose up -d failed"
}
svc() { echo "${PROJECT}_node${1}_1"; } # podman-compose's container names
for i in 1 2 3; do
  if ! wait_for 90 ready "127.0.0.1:$((11079 + i))"; then
    cat "$TMP/compose-up.log"
    node_logs "$(svc 1)" "$(svc 2)" "$(svc 3)"
    test_fail "compose node$i not ready on its published port $((11079 + i)) within 90s"
  fi
done
say "compose: three nodes ready on the published ports"

# Inside the compose network the members' names resolve, so REDIRECTs work.
inner=node1:8080,node2:8081,node3:8082
out=$(podman exec "$(svc 1)" kvctl --endpoints "$inner" put compose-key in-the-network 2>&1) ||
  test_fail "kvctl put inside the compose network: $out"
[ "$out" = OK ] || test_fail "kvctl put inside the compose network answered '$out', not OK"
for i in 1 2 3; do
  wait_for 30 stale_is "127.0.0.1:$((8079 + i))" compose-key in-the-network ||
    test_fail "compose node$i does not serve the value through its published port"
done
for i in 1 2 3; do
  check_priority "compose node$i" "$(svc "$i")"
done
say "compose: written inside the network, read from every node through the published ports"

# The compose file's own example: kill -s KILL a node (the leader), start it again.
group1() { # group 1's METRIC as node $2 reports it; empty if it does not answer
  { curl -s --max-time 2 "http://127.0.0.1:$((11079 + $2))/metrics" || true; } |
    awk -v m="$1{group=\"1\"}" '$1 == m { print $2 }'
}
old=$(group1 kvstore_raft_leader 1)
case "$old" in 1 | 2 | 3) ;; *) test_fail "compose node1 knows no leader (kvstore_raft_leader '$old')" ;; esac
term=$(group1 kvstore_raft_term "$old")
[ -n "$term" ] || test_fail "compose node$old, the leader, reports no term"
podman kill -s KILL "$(svc "$old")" >/dev/null || harness_fail "podman kill failed"
other=$((old % 3 + 1))
# A leader elected in a later term, as node $other sees it. (Podman, as
# Docker, does not restart a container killed on purpose.)
new_leader() {
  local l t
  l=$(group1 kvstore_raft_leader "$other")
  t=$(group1 kvstore_raft_term "$other")
  [ -n "$l" ] && [ "$l" != 0 ] && [ -n "$t" ] && [ "$t" -gt "$term" ] || return 1
  elected="node$l in term $t"
}
wait_for 60 new_leader || test_fail "no leader elected within 60s after the leader (node$old) was killed"
say "compose: leader node$old killed (term $term); $elected"
"${compose[@]}" start "node$old" >"$TMP/compose-start.log" 2>&1 || {
  cat "$TMP/compose-start.log"
  test_fail "podman-compose start node$old failed"
}
wait_for 90 ready "127.0.0.1:$((11079 + old))" ||
  test_fail "node$old not ready within 90s after its restart"
wait_for 30 stale_is "127.0.0.1:$((8079 + old))" compose-key in-the-network ||
  test_fail "node$old lost the value across kill -9 and restart"
# All three agree on one leader again.
settled() {
  local a b c
  a=$(group1 kvstore_raft_leader 1)
  b=$(group1 kvstore_raft_leader 2)
  c=$(group1 kvstore_raft_leader 3)
  [ -n "$a" ] && [ "$a" != 0 ] && [ "$a" = "$b" ] && [ "$b" = "$c" ] || return 1
  settled_on=$a
}
if ! wait_for 90 settled; then
  node_logs "$(svc 1)" "$(svc 2)" "$(svc 3)"
  test_fail "the compose nodes do not agree on a leader within 90s of node$old's restart"
fi
say "compose: node$old started again, serves the value; all three follow node$settled_on"

"${compose[@]}" down -v >"$TMP/compose-down.log" 2>&1 || {
  cat "$TMP/compose-down.log"
  test_fail "podman-compose down -v failed"
}
left=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT")
[ -z "$left" ] || test_fail "podman-compose down -v left containers: $left"
say "compose: down -v"
say "PASSED"
