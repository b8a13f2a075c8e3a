/**
 * Polls `check` until it stops throwing, for at most `timeoutMs`; then the last failure is the
 * test's. For what happens in the background on its own time (a file watcher, another instance, a
 * sweep run by a real timer); what runs on a clock the test owns is advanced instead (clock.ts).
 */
export async function eventually(check: () => Promise<void> | void, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}
