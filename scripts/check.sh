#!/usr/bin/env bash
# `npm test`: lint, format check, typecheck, then the whole test suite, on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
stowage_ensure_deps
echo "== lint"; npx eslint --max-warnings 0 .
echo "== format"; npx prettier --check --log-level warn .
echo "== typecheck"; npx tsc --noEmit
echo "== tests"
report="$(mktemp)"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line with the counts, for tools that read a run's last line.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$report" || true
rm -f "$report"
exit "$status"
