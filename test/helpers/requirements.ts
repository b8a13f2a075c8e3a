/**
 * A suite that needs a service or a tool runs when it is there and is skipped with a message when
 * it is not — except on CI (CI=true, as .ci/run sets it), where a skip would hide that nothing was
 * tested: there a missing requirement fails the test file, naming what .ci/run should provide.
 */
const onCi = process.env.CI === 'true' || process.env.CI === '1';
const told = new Set<string>();

/** `available` as it is; when false, says once per file why the tests are skipped, or throws on CI. */
export function required(available: boolean, what: string, how: string): boolean {
  if (available) return true;
  if (onCi) throw new Error(`${what} is missing on CI, so its tests cannot run: ${how}`);
  if (!told.has(what)) {
    told.add(what);
    console.warn(`skipping the tests that need ${what}: ${how}`);
  }
  return false;
}
