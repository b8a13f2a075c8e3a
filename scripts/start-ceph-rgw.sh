#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with its S3 gateway (radosgw) on 127.0.0.1, for the S3 test
# suites: 1 monitor, 1 BlueStore OSD on a sparse file, 1 radosgw (beast frontend); no cephx, one
# replica, no manager. About 10 s to start, 2 s to stop; some 350 MiB of memory under the tests.
#
# Needs (Debian): apt-get install --no-install-recommends ceph-mon ceph-osd radosgw
#
# Usage:  bash scripts/start-ceph-rgw.sh [DIR]     (DIR: the cluster's data; default a new temp dir)
#   Prints the variables the tests read, as `export` lines (also written to DIR/env), e.g.
#     eval "$(bash scripts/start-ceph-rgw.sh | grep ^export)"
#   Stop: bash scripts/start-ceph-rgw.sh --stop DIR   (ends the daemons and removes DIR)
# Env:    RGW_PORT (default: the first free port from 7480), S3_ACCESS_KEY, S3_SECRET_KEY
set -euo pipefail

stop_cluster() {
  local dir=$1 pids=() pid alive
  for pid_file in "$dir"/run/rgw.pid "$dir"/run/osd.pid "$dir"/run/mon.pid; do
    [ -f "$pid_file" ] && pids+=("$(cat "$pid_file")")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  # The data is thrown away: no need to wait long for a clean shutdown.
  for _ in $(seq 20); do
    alive=
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || return 0
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

if [ "${1:-}" = "--stop" ]; then
  dir=${2:?usage: start-ceph-rgw.sh --stop DIR}
  [ -f "$dir/.stowage-ceph" ] || { echo "start-ceph-rgw: $dir is not a cluster this script made" >&2; exit 1; }
  stop_cluster "$dir"
  rm -rf "$dir"
  exit 0
fi

for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool curl; do
  command -v "$tool" >/dev/null || {
    echo "start-ceph-rgw: $tool not found (apt-get install ceph-mon ceph-osd radosgw curl)" >&2
    exit 1
  }
done

if [ $# -gt 0 ]; then
  D=$(realpath -m "$1")
  [ ! -e "$D" ] || [ -f "$D/.stowage-ceph" ] || [ -z "$(ls -A "$D")" ] || {
    echo "start-ceph-rgw: $D exists and is not a cluster this script made; refusing to remove it" >&2
    exit 1
  }
  rm -rf "$D"
  mkdir -p "$D"
else
  D=$(mktemp -d "${TMPDIR:-/tmp}/stowage-ceph-XXXXXX")
fi
touch "$D/.stowage-ceph"
mkdir -p "$D"/{run,log,mon.a,osd.0,rgw}

# On any failure: stop what was started and show why, instead of leaving daemons behind.
fail() {
  echo "start-ceph-rgw: $1" >&2
  for log in "$D"/log/*; do
    [ -s "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
  done
  stop_cluster "$D"
  exit 1
}
trap 'fail "a step failed (line $LINENO)"' ERR

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local port=$1
  while ! port_free "$port"; do port=$((port + 1)); done
  echo "$port"
}
RGW_PORT=${RGW_PORT:-$(free_port 7480)}
port_free "$RGW_PORT" || fail "port $RGW_PORT is in use"
V2=$(free_port 13300)
V1=$(free_port 16789)
AK=${S3_ACCESS_KEY:-stowage-test}
SK=${S3_SECRET_KEY:-stowage-test-secret}
FSID=$(cat /proc/sys/kernel/random/uuid)

# Small and quick rather than safe: one copy of everything, no authentication between daemons
# (they only listen on 127.0.0.1), few placement groups.
cat >"$D/ceph.conf" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc secure
ms client mode = crc secure
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
osd crush chooseleaf type = 0
[mon]
mon data = $D/mon.\$id
# Commit map changes (pool creation, the OSD joining) at once instead of batching them for 1 s.
paxos propose interval = 0.01
paxos min wait = 0.001
[osd]
osd data = $D/osd.\$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 8589934592
bluestore fsck on mount = false
# A small fixed cache instead of one grown towards osd_memory_target (at least 896 MiB).
bluestore cache autotune = false
bluestore cache size = 67108864
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
EOF
C=(-c "$D/ceph.conf")

ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" >"$D/log/mon-mkfs.out" 2>&1
ceph-mon "${C[@]}" -i a -f >"$D/log/mon.out" 2>&1 &
echo $! >"$D/run/mon.pid"
timeout 60 ceph "${C[@]}" mon stat >/dev/null 2>>"$D/log/ceph-cli.err" || fail "the monitor did not come up"

# RGW's pools up front, so the first bucket, object or multipart upload does not stall for seconds.
# One ceph process for all the commands (each costs a second to start), while the OSD starts.
for pool in .rgw.root default.rgw.control default.rgw.meta default.rgw.log default.rgw.buckets.index \
  default.rgw.buckets.data default.rgw.buckets.non-ec; do
  echo "osd pool create $pool 8 8"
  echo "osd pool application enable $pool rgw"
done | ceph "${C[@]}" >"$D/log/pools.out" 2>&1 &
pools=$!

OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(timeout 30 ceph "${C[@]}" osd new "$OSD_UUID" 2>>"$D/log/ceph-cli.err")
ceph-osd "${C[@]}" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd-mkfs.out" 2>&1
ceph-osd "${C[@]}" -i "$OSD_ID" -f >"$D/log/osd.out" 2>&1 &
echo $! >"$D/run/osd.pid"
up=
for _ in $(seq 120); do
  if ceph "${C[@]}" osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1'; then up=1 && break; fi
  kill -0 "$(cat "$D/run/osd.pid")" 2>/dev/null || fail "the OSD exited"
  sleep 0.5
done
[ -n "$up" ] || fail "the OSD did not come up"

# (ceph reading commands from stdin goes on after a failed one: count what it did.)
wait "$pools" && [ "$(grep -c "^enabled application 'rgw'" "$D/log/pools.out")" = 7 ] ||
  fail "could not create radosgw's pools"

radosgw "${C[@]}" -n client.rgw.a -f >"$D/log/rgw.out" 2>&1 &
echo $! >"$D/run/rgw.pid"
up=
for _ in $(seq 240); do
  if curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then up=1 && break; fi
  kill -0 "$(cat "$D/run/rgw.pid")" 2>/dev/null || fail "radosgw exited"
  sleep 0.5
done
[ -n "$up" ] || fail "radosgw did not answer on 127.0.0.1:$RGW_PORT"
radosgw-admin "${C[@]}" user create --uid=stowage-test --display-name=stowage-test \
  --access-key="$AK" --secret-key="$SK" >/dev/null 2>"$D/log/user-create.err" ||
  fail "could not create the S3 user"
trap - ERR

cat >"$D/env" <<EOF
export STOWAGE_TEST_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export STOWAGE_TEST_S3_ACCESS_KEY=$AK
export STOWAGE_TEST_S3_SECRET_KEY=$SK
EOF
echo "radosgw is up: S3 on http://127.0.0.1:$RGW_PORT, data in $D"
echo "stop it with: bash $(realpath "$0") --stop $D"
cat "$D/env"
