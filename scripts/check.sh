#!/usr/bin/env bash
# `npm test`: lint, format check, typecheck, then the whole test suite, on Node 24.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/node-env.sh
stowage_ensure_deps
# The console's API types come from the served OpenAPI document: generated, typechecked and built
# first, so a drift between the console and the contract fails here, and lint sees the types.
echo "== console"; node scripts/build-console.ts
echo "== lint"; npx eslint --max-warnings 0 .
echo "== format"; npx prettier --check --log-level warn .
echo "== typecheck"; npx tsc --noEmit
echo "== tests"
# Memory measurements need a quiet process: they run on their own, after the rest, so the RSS of
# their process is not inflated by dozens of test files running in parallel on two cores.
ISOLATED=(test/media/large.test.ts)
reports=()
status=0
run() {
  local report
  report="$(mktemp)"
  reports+=("$report")
  npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
}
if [ $# -gt 0 ]; then
  run "$@"
else
  run $(printf -- '--exclude %s ' "${ISOLATED[@]}")
  run "${ISOLATED[@]}"
fi
# One plain closing line with the counts of every run, for tools that read a run's last line.
node -e '
  let passed = 0, failed = 0, skipped = 0;
  for (const file of process.argv.slice(1)) {
    const r = JSON.parse(require("node:fs").readFileSync(file, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    skipped += r.numPendingTests + r.numTodoTests;
  }
  console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
' "${reports[@]}" || true
rm -f "${reports[@]}"
exit "$status"
