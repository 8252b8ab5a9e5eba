#!/usr/bin/env bash
# Runs a local kvstore cluster on 127.0.0.1.
#
#   scripts/cluster.sh start [N] [--shards S] [--replicas R] [--secure]
#                                  build if needed, start N nodes (default 3),
#                                  wait for a leader (sharded: for every
#                                  shard's too), print each node's state
#   scripts/cluster.sh status      one line per node: role, term, leader, ...;
#                                  sharded: and the shard map
#   scripts/cluster.sh stop        SIGTERM every node and wait for it to exit
#   scripts/cluster.sh restart [N] [--shards S] [--replicas R] [--secure]
#                                  stop, then start (each defaults to the last)
#   scripts/cluster.sh demo        start, write and read through
#                                  examples/client.py, kill -9 the leader,
#                                  watch a new one take over, restart the
#                                  killed node and watch it catch up
#
# Sharding: a cluster is sharded by default, 16 shards of R replicas each
# (--shards S, --replicas R, default 3); --shards 0 makes it unsharded, one
# Raft group on every node. Both are fixed when the cluster is created: they
# are saved in DIR/cluster.conf with N and the base port, and every later
# start of a node (restart, demo) passes them again; start without --shards
# on existing data keeps its sharding. start refuses data made with other
# values: remove DIR/node-* first.
#
# --secure: every port speaks CurveZMQ (kvstore --key, --peer-keys,
# --client-keys): key pairs are made once with kvctl keygen in DIR/keys, one
# per node (node-ID) and one admin client key (admin); DIR/keys/peers lists
# the members' public keys and addresses, DIR/keys/clients the client keys
# and their roles. The tools then need the admin key:
#   export KVSTORE_KEY=DIR/keys/admin.key KVSTORE_SERVER_KEYS=DIR/keys/peers
#
# Node ID (1..N) serves clients on BASE+ID-1, Raft on that port + 1000 and
# events on that port + 2000 (docs/protocol.md). Its data is in DIR/node-ID,
# its log in DIR/node-ID.log; DIR/cluster.pids lists "ID PID" per node.
#
# Environment:
#   KV_BASE_PORT    first client port (default 8080)
#   KV_CLUSTER_DIR  data, logs and pid file (default ./data in the repository)
#   KV_BIN          the kvstore binary to run; when set, nothing is built
#                   (default build/release/src/node/kvstore, built on demand)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE_PORT=${KV_BASE_PORT:-8080}
DIR=${KV_CLUSTER_DIR:-$ROOT/data}
BUILD_DIR=$ROOT/build/release
BIN=${KV_BIN:-$BUILD_DIR/src/node/kvstore}
PY=/usr/bin/python3 # Debian's python3 has python3-zmq and python3-msgpack
CLIENT=$ROOT/examples/client.py
PIDS=$DIR/cluster.pids
CONF=$DIR/cluster.conf
START_DEADLINE=${KV_START_DEADLINE:-30} # seconds to wait for a leader
STOP_DEADLINE=15                        # seconds a node gets to exit on SIGTERM

say() { printf '==> %s\n' "$*"; }
die() {
  printf 'cluster.sh: %s\n' "$*" >&2
  exit 1
}

# ---- configuration of the running (or last) cluster -------------------------

# N, the base port and the sharding (SHARDS 0: unsharded) are saved at start
# so that status, stop, restart and the demo address the cluster that runs,
# whatever the environment says later.
load_conf() {
  N=3
  SHARDS=0
  REPLICAS=3
  SECURE=0
  if [ -f "$CONF" ]; then
    # shellcheck source=/dev/null
    . "$CONF"
  fi
  use_admin_key
}

port_of() { echo $((BASE_PORT + $1 - 1)); }
endpoint_of() { echo "127.0.0.1:$(port_of "$1")"; }
endpoints() {
  local i list=""
  for ((i = 1; i <= N; i++)); do list+="${list:+,}$(endpoint_of "$i")"; done
  echo "$list"
}
peers() {
  local i list=""
  for ((i = 1; i <= N; i++)); do list+="${list:+,}$i=$(endpoint_of "$i")"; done
  echo "$list"
}
describe() {
  if [ "$1" -gt 0 ]; then echo "--shards $1 --replicas $2"; else echo "no --shards (unsharded)"; fi
}

# The pid of node ID if it is alive and still a kvstore process (a pid can be
# reused by another program after the node died), else nothing.
pid_of() {
  local id=$1 pid
  [ -f "$PIDS" ] || return 0
  pid=$(awk -v id="$id" '$1 == id { print $2 }' "$PIDS")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--data-dir $DIR/node-$id "; then
    echo "$pid"
  fi
}

running_nodes() {
  local i
  for ((i = 1; i <= N; i++)); do [ -z "$(pid_of "$i")" ] || echo "$i"; done
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- building ---------------------------------------------------------------

ensure_binary() {
  if [ -n "${KV_BIN:-}" ]; then
    [ -x "$BIN" ] || die "KV_BIN=$BIN is not an executable"
    return
  fi
  "$ROOT/scripts/install-deps.sh"
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    say "configuring $BUILD_DIR (RelWithDebInfo)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TESTS=OFF >/dev/null
  fi
  say "building kvstore, kvctl, kvload, kvmon"
  cmake --build "$BUILD_DIR" -j"$(($(nproc) < 2 ? $(nproc) : 2))" \
    --target kvstore kvctl kvload kvmon >/dev/null
}

# ---- talking to the nodes -----------------------------------------------------

# Runs a small Python helper on top of examples/client.py:
#   show                    print one line per node (exit 3 if none answers);
#                           sharded: and the shard map
#   wait-leader SECS [NOT]  wait until every live node agrees on one leader
#                           (other than node NOT); print the leader's id.
#                           Sharded: the metadata group's leader, as the live
#                           nodes hosting it agree, and every shard has a live
#                           leader too
#   wait-caught-up SECS ID  wait until node ID has applied all the leader has
#                           committed and its digest equals the leader's
#                           (sharded: in every group it hosts)
cluster_py() {
  "$PY" - "$CLIENT" "$(endpoints)" "$@" <<'EOF'
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("client", sys.argv[1])
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)
endpoints, mode, args = sys.argv[2].split(","), sys.argv[3], sys.argv[4:]
key, server_keys = None, None
if os.environ.get("KVSTORE_KEY"):  # a secure cluster (use_admin_key)
    key = client.load_key(os.environ["KVSTORE_KEY"])
    server_keys = client.load_server_keys(os.environ["KVSTORE_SERVER_KEYS"])
c = client.Client(endpoints, attempt_timeout=0.5, key=key, server_keys=server_keys)

def statuses():
    return {ep: c.status(ep) for ep in endpoints}

def until(deadline, cond):
    end = time.monotonic() + float(deadline)
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    return None

# Sharded clusters (docs/protocol.md): status has "shards" > 0 and "groups",
# one per Raft group hosted; shard None is the metadata group (group 1). A
# node's own fields describe its main group: group 1 if hosted, else its first.
def sharded(sts):
    return any(st.get("shards", 0) > 0 for st in sts)

def shard_leaders(sts):
    """shard -> the live node that leads it."""
    return {g["shard"]: st["node"] for st in sts for g in st.get("groups", [])
            if g.get("shard") is not None and g["role"] == "leader"}

if mode == "show":
    alive = 0
    sts = statuses()
    for ep, st in sts.items():
        if st is None:
            print(f"  {ep:<16} DOWN")
            continue
        alive += 1
        extra = ""
        if st.get("groups"):
            main = min(g["group"] for g in st["groups"])
            hosts = [g for g in st["groups"] if g.get("shard") is not None]
            extra = (f"  [{'meta' if main == 1 else 'group ' + str(main)}; "
                     f"shards {len(hosts)}, leads {sum(g['role'] == 'leader' for g in hosts)}]")
        print(f"  node {st['node']}  {ep:<16} {st['role']:<13} term {st['term']:<3} "
              f"leader {st['leader'] or '-':<2} commit {st['commit']:<6} applied {st['applied']:<6} "
              f"keys {st['keys']:<5} digest {st['digest']:016x}{extra}")
    live = [st for st in sts.values() if st is not None]
    if sharded(live):
        try:
            m = c.shards()
        except Exception as e:  # the node table stands without it
            print(f"  shard map: {e}")
            sys.exit(0)
        led = shard_leaders(live)
        print(f"  shard map version {m['version']}: {m['shards']} shards x {m['replicas']} "
              f"replicas, {len(m['members'])} members; {len(led)} shards with a live leader")
        print(f"  {'SHARD':>5} {'GROUP':>5}  {'REPLICAS':<14} LEADER")
        for e in sorted(m["map"], key=lambda e: e["shard"]):
            # The leader as the live nodes say, else the map's hint.
            lead = led.get(e["shard"]) or e["leader"]
            leader = f"{lead} {m['members'].get(str(lead), '')}" if lead else "-"
            print(f"  {e['shard']:>5} {e['group']:>5}  {','.join(map(str, e['replicas'])):<14} {leader}")
    sys.exit(0 if alive else 3)

if mode == "wait-leader":
    exclude = int(args[1]) if len(args) > 1 else 0
    def leader():
        live = [st for st in statuses().values() if st is not None]
        if sharded(live):
            meta = [g for st in live for g in st.get("groups", []) if g["group"] == 1]
            ids = {g["leader"] for g in meta}
            shards = max(st.get("shards", 0) for st in live)
            if (meta and len(meta) * 2 > len(meta[0]["voters"]) and len(ids) == 1 and
                    0 not in ids and exclude not in ids and len(shard_leaders(live)) == shards):
                return ids.pop()
            return None
        ids = {st["leader"] for st in live}
        if len(live) * 2 > len(endpoints) and len(ids) == 1 and 0 not in ids and exclude not in ids:
            return ids.pop()
    found = until(args[0], leader)
    if not found:
        sys.exit(1)
    print(found)

if mode == "wait-caught-up":
    node = int(args[1])
    def caught_up():
        sts = [st for st in statuses().values() if st is not None]
        if sharded(sts):
            me = [st for st in sts if st["node"] == node]
            if not me or not me[0].get("groups"):
                return False
            for mine in me[0]["groups"]:
                lead = [g for st in sts for g in st.get("groups", [])
                        if g["group"] == mine["group"] and g["role"] == "leader"]
                if not lead or mine["applied"] < lead[0]["commit"] or mine["digest"] != lead[0]["digest"]:
                    return False
            return True
        lead = [st for st in sts if st["role"] == "leader"]
        me = [st for st in sts if st["node"] == node]
        if lead and me and me[0]["applied"] >= lead[0]["commit"] and me[0]["digest"] == lead[0]["digest"]:
            return True
    sys.exit(0 if until(args[0], caught_up) else 1)
EOF
}

# Polls until the live nodes agree on a leader (not node $2, if given) and
# prints its id; fails at the deadline, or at once if a node that should run
# has exited (while starting).
wait_leader() {
  local end=$((SECONDS + $1)) exclude=${2:-0} leader i
  while [ "$SECONDS" -lt "$end" ]; do
    if leader=$(cluster_py wait-leader 1 "$exclude"); then
      echo "$leader"
      return 0
    fi
    if [ "$STARTING" = 1 ]; then
      for ((i = 1; i <= N; i++)); do
        # kill -0 on the recorded pid: right after the fork its command line
        # is not yet kvstore's, so pid_of could miss it.
        kill -0 "$(awk -v id="$i" '$1 == id { print $2 }' "$PIDS")" 2>/dev/null ||
          { echo "cluster.sh: node $i exited; see $DIR/node-$i.log" >&2; return 1; }
      done
    fi
  done
  return 1
}

# ---- commands ---------------------------------------------------------------------

start_node() {
  local id=$1
  mkdir -p "$DIR"
  # nohup: the node outlives this script and the terminal it ran in.
  local sharding=() keys=()
  sharding=(--shards "$SHARDS")
  [ "$SHARDS" -eq 0 ] || sharding+=(--replicas "$REPLICAS")
  [ "$SECURE" = 0 ] || keys=(--key "$DIR/keys/node-$id.key" --peer-keys "$DIR/keys/peers"
    --client-keys "$DIR/keys/clients")
  nohup "$BIN" --id "$id" --peers "$(peers)" --data-dir "$DIR/node-$id" "${sharding[@]}" "${keys[@]}" \
    >>"$DIR/node-$id.log" 2>&1 </dev/null &
  local pid=$!
  disown "$pid" # no "Killed" job notices when the demo kills it
  { grep -v "^$id " "$PIDS" 2>/dev/null || true; echo "$id $pid"; } >"$PIDS.tmp"
  mv "$PIDS.tmp" "$PIDS"
}

# Undoes a start that failed half-way: kills what it started.
STARTING=0
cleanup_failed_start() {
  local rc=$?
  if [ "$STARTING" = 1 ]; then
    echo "cluster.sh: start failed; stopping the nodes it started" >&2
    stop_nodes >&2 || true
    for ((i = 1; i <= N; i++)); do
      [ -f "$DIR/node-$i.log" ] && { echo "--- $DIR/node-$i.log (last lines)"; tail -n 5 "$DIR/node-$i.log"; } >&2
    done
  fi
  exit "$rc"
}

# --secure: a key pair per node and an admin client key in DIR/keys (made
# once), the peers file ("ID KEY HOST:PORT") and the client keys file.
make_keys() {
  local kvctl i name
  kvctl=$(dirname "$BIN")/../../tools/kvctl
  [ -x "$kvctl" ] || die "--secure needs kvctl beside the kvstore build ($kvctl)"
  mkdir -p "$DIR/keys"
  for name in admin $(for ((i = 1; i <= N; i++)); do echo "node-$i"; done); do
    [ -f "$DIR/keys/$name.key" ] || "$kvctl" keygen "$DIR/keys/$name" >/dev/null 2>&1 ||
      die "kvctl keygen $DIR/keys/$name failed"
  done
  : >"$DIR/keys/peers.tmp"
  for ((i = 1; i <= N; i++)); do
    echo "$i $(cat "$DIR/keys/node-$i.pub") $(endpoint_of "$i")" >>"$DIR/keys/peers.tmp"
  done
  mv "$DIR/keys/peers.tmp" "$DIR/keys/peers"
  echo "admin $(cat "$DIR/keys/admin.pub") admin" >"$DIR/keys/clients"
}

# Secure clusters: the admin key for every client this script runs.
use_admin_key() {
  [ "$SECURE" = 0 ] || export KVSTORE_KEY=$DIR/keys/admin.key KVSTORE_SERVER_KEYS=$DIR/keys/peers
}

# start [N] [--shards S] [--replicas R] [--secure]; restart sets
# START_BASE_PORT to the old base port and START_SECURE to the old mode.
cmd_start() {
  local want=3 shards=16 shards_given=0 replicas=3 replicas_given=0 secure=${START_SECURE:-0}
  while [ $# -gt 0 ]; do
    case $1 in
      --secure) secure=1; shift ;;
      --shards | --replicas)
        [ $# -ge 2 ] || die "start: $1 needs a value"
        if [ "$1" = --shards ]; then shards=$2 shards_given=1; else replicas=$2 replicas_given=1; fi
        shift 2
        ;;
      --shards=*) shards=${1#*=} shards_given=1; shift ;;
      --replicas=*) replicas=${1#*=} replicas_given=1; shift ;;
      -*) die "start: unknown option $1 (usage: $0 start [N] [--shards S] [--replicas R] [--secure])" ;;
      *) want=$1; shift ;;
    esac
  done
  [[ "$want" =~ ^[1-9][0-9]*$ ]] || die "start: N must be a positive number"
  [[ "$shards" =~ ^[0-9]+$ ]] || die "start: --shards must be a number (0: unsharded)"
  [[ "$replicas" =~ ^[1-9][0-9]*$ ]] || die "start: --replicas must be a positive number"
  shards=$((10#$shards)) replicas=$((10#$replicas))
  [ "$shards" -gt 0 ] || [ "$replicas_given" = 0 ] || die "start: --replicas needs --shards"
  load_conf
  if [ -n "$(running_nodes)" ]; then
    die "a cluster is already running from $DIR (nodes: $(running_nodes | tr '\n' ' ')); run '$0 stop' first"
  fi
  # The sharding is fixed when the data is created: existing data keeps
  # its own, and the nodes would refuse other values, so say it here, plainly.
  if [ "$shards_given" = 0 ] && [ -f "$CONF" ] && compgen -G "$DIR/node-*/" >/dev/null; then
    shards=$SHARDS
    [ "$replicas_given" = 1 ] || replicas=$REPLICAS
  fi
  if [ -f "$CONF" ] && compgen -G "$DIR/node-*/" >/dev/null &&
    { [ "$shards" != "$SHARDS" ] || { [ "$shards" -gt 0 ] && [ "$replicas" != "$REPLICAS" ]; }; }; then
    die "the data in $DIR was made by a cluster started with $(describe "$SHARDS" "$REPLICAS"); start it the same way (or '$0 restart'), or remove $DIR/node-* first"
  fi
  N=$want
  SHARDS=$shards
  REPLICAS=$replicas
  SECURE=$secure
  BASE_PORT=${KV_BASE_PORT:-${START_BASE_PORT:-8080}}
  local i p
  for ((i = 1; i <= N; i++)); do
    for p in $(port_of "$i") $(($(port_of "$i") + 1000)) $(($(port_of "$i") + 2000)); do
      ! port_in_use "$p" || die "port $p is in use; stop what uses it or set KV_BASE_PORT"
    done
  done
  ensure_binary
  mkdir -p "$DIR"
  [ "$SECURE" = 0 ] || make_keys
  use_admin_key
  printf 'N=%s\nBASE_PORT=%s\nSHARDS=%s\nREPLICAS=%s\nSECURE=%s\n' "$N" "$BASE_PORT" "$SHARDS" \
    "$REPLICAS" "$SECURE" >"$CONF"
  rm -f "$PIDS"
  STARTING=1
  trap cleanup_failed_start EXIT
  trap 'exit 130' INT TERM
  say "starting $N nodes on $(endpoints)$([ "$SHARDS" -eq 0 ] || echo ", $SHARDS shards x $REPLICAS replicas")$([ "$SECURE" = 0 ] || echo ", CurveZMQ keys in $DIR/keys") (data and logs in $DIR)"
  for ((i = 1; i <= N; i++)); do start_node "$i"; done
  local leader
  leader=$(wait_leader "$START_DEADLINE") || die "no leader elected (deadline ${START_DEADLINE}s)"
  STARTING=0
  trap - EXIT INT TERM
  if [ "$SHARDS" -eq 0 ]; then
    say "node $leader is the leader"
  else
    say "node $leader leads the metadata group; every shard has a leader"
  fi
  cluster_py show || true
  [ "$SECURE" = 0 ] || say "the tools need a key: export KVSTORE_KEY=$DIR/keys/admin.key KVSTORE_SERVER_KEYS=$DIR/keys/peers"
}

# SIGTERM to every node, then wait (with a deadline) for each to exit.
stop_nodes() {
  local i pid pids=()
  for ((i = 1; i <= N; i++)); do
    pid=$(pid_of "$i")
    [ -z "$pid" ] || { kill -TERM "$pid" 2>/dev/null || true; pids+=("$i:$pid"); }
  done
  local end=$((SECONDS + STOP_DEADLINE)) entry
  for entry in "${pids[@]}"; do
    pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "node ${entry%%:*} (pid $pid) did not stop within ${STOP_DEADLINE}s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped node ${entry%%:*} (pid $pid)"
  done
  rm -f "$PIDS"
}

cmd_stop() {
  load_conf
  if [ -z "$(running_nodes)" ]; then
    echo "no cluster running from $DIR"
    rm -f "$PIDS"
    return 0
  fi
  stop_nodes
}

cmd_status() {
  load_conf
  [ -f "$CONF" ] || die "no cluster was started from $DIR"
  local i
  [ "$SHARDS" -eq 0 ] || echo "sharded: $SHARDS shards x $REPLICAS replicas"
  [ "$SECURE" = 0 ] || echo "secure: every port speaks CurveZMQ with the keys in $DIR/keys"
  for ((i = 1; i <= N; i++)); do
    local pid
    pid=$(pid_of "$i")
    echo "node $i: ${pid:+pid }${pid:-not running}, client $(endpoint_of "$i"), log $DIR/node-$i.log"
  done
  cluster_py show
}

# restart [N] [--shards S] [--replicas R] [--secure]: what is not given is the
# last start's.
cmd_restart() {
  load_conf
  local last=("$N")
  last+=(--shards "$SHARDS")
  [ "$SHARDS" -eq 0 ] || last+=(--replicas "$REPLICAS")
  local base=$BASE_PORT secure=$SECURE
  cmd_stop
  START_BASE_PORT=$base START_SECURE=$secure cmd_start "${last[@]}" "$@"
}

kv() { "$PY" "$CLIENT" --endpoints "$1" "${@:2}"; }

cmd_demo() {
  load_conf
  [ -n "$(running_nodes)" ] || cmd_start 3
  load_conf
  [ "$N" -ge 3 ] || die "the demo needs at least 3 nodes (restart with: $0 restart 3)"
  local all leader new survivors i
  all=$(endpoints)
  say "writing and reading through examples/client.py --endpoints $all"
  for i in 1 2 3; do
    echo "\$ client.py put demo-key-$i value-$i  ->  $(kv "$all" put "demo-key-$i" "value-$i")"
  done
  for i in 1 2 3; do
    echo "\$ client.py get demo-key-$i  ->  $(kv "$all" get "demo-key-$i")"
  done
  echo "\$ client.py cas demo-key-1 value-1 changed  ->  $(kv "$all" cas demo-key-1 value-1 changed)"

  leader=$(wait_leader 10) || die "no leader"
  say "kill -9 the leader, node $leader (pid $(pid_of "$leader"))"
  kill -KILL "$(pid_of "$leader")"
  new=$(wait_leader "$START_DEADLINE" "$leader") || die "no new leader within ${START_DEADLINE}s"
  say "node $new is the new leader"
  cluster_py show || true
  survivors=""
  for ((i = 1; i <= N; i++)); do [ "$i" = "$leader" ] || survivors+="${survivors:+,}$(endpoint_of "$i")"; done
  say "the data is still there (reading from the survivors)"
  echo "\$ client.py get demo-key-1  ->  $(kv "$survivors" get demo-key-1)"
  echo "\$ client.py get demo-key-3  ->  $(kv "$survivors" get demo-key-3)"
  echo "\$ client.py put demo-key-4 written-without-node-$leader  ->  $(kv "$survivors" put demo-key-4 "written-without-node-$leader")"

  say "restarting node $leader"
  start_node "$leader"
  cluster_py wait-caught-up "$START_DEADLINE" "$leader" || die "node $leader did not catch up within ${START_DEADLINE}s"
  say "node $leader caught up (same applied index and digest as the leader)"
  cluster_py show || true
  echo "\$ client.py --stale get demo-key-4 (from node $leader)  ->  $(kv "$(endpoint_of "$leader")" --stale get demo-key-4)"
  say "the cluster is still running; stop it with: $0 stop"
}

usage() {
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) shift; cmd_restart "$@" ;;
  demo) cmd_demo ;;
  *) usage ;;
esac
