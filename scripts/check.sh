#!/usr/bin/env bash
# `npm test`: lint, format check, typecheck, then the whole test suite, on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
stowage_ensure_deps
echo "== lint"; npx eslint --max-warnings 0 .
echo "== format"; npx prettier --check --log-level warn .
echo "== typecheck"; npx tsc --noEmit
echo "== tests"; npx vitest run "$@"
