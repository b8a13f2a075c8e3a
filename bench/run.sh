#!/usr/bin/env bash
# npm run bench [-- --quick|--full] [--only 1,5]: the benchmark (see BENCHMARKS.md).
# Needs wrk, nginx, clamd/clamdscan and (figures 10 and 11, unless BENCH_S3_ENDPOINT names an
# S3 server) Ceph's radosgw from Debian; installs the missing ones with apt-get when
# run as root (and says so), else names the command to run. Packages are kept from starting their
# system services: the benchmark starts its own nginx and clamd on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/clamd ] || missing+=(clamav-daemon)
command -v clamdscan >/dev/null || missing+=(clamdscan)
if [ -z "${BENCH_S3_ENDPOINT:-}" ]; then
  command -v ceph-mon >/dev/null || missing+=(ceph-mon)
  command -v ceph-osd >/dev/null || missing+=(ceph-osd)
  command -v radosgw >/dev/null || missing+=(radosgw)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench: missing ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "bench: installing ${missing[*]} with apt-get (Debian packages)" >&2
  policy=/usr/sbin/policy-rc.d
  created=
  [ -e "$policy" ] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1; }
  export DEBIAN_FRONTEND=noninteractive
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  [ -z "$created" ] || rm -f "$policy"
  [ "$status" -eq 0 ] || { echo "bench: apt-get failed" >&2; exit "$status"; }
fi

# shellcheck source=../scripts/node-env.sh
source scripts/node-env.sh
stowage_ensure_deps
exec node bench/main.ts "$@"
