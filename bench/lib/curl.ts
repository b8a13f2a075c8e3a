import { runOk } from './proc.ts';

/**
 * Transfers with curl, the same client for Stowage and for every baseline. Its own timer
 * (time_total: from before connecting until the last response byte) is the duration.
 * `Expect: 100-continue` is turned off so that no side waits for an interim response.
 */
export interface Transfer {
  status: number;
  seconds: number;
  /** The response body (uploads); downloads go to /dev/null. */
  body: string;
}

const WRITE_OUT = '\n%{http_code} %{time_total}';

function parse(stdout: string): Transfer {
  const cut = stdout.lastIndexOf('\n');
  const [status, seconds] = stdout
    .slice(cut + 1)
    .trim()
    .split(' ');
  return { status: Number(status), seconds: Number(seconds), body: stdout.slice(0, cut) };
}

function auth(token: string | undefined): string[] {
  return token ? ['-H', `Authorization: Bearer ${token}`] : [];
}

/** `curl -F file=@FILE` (multipart/form-data, streamed from the file). */
export async function uploadForm(url: string, file: string, token?: string): Promise<Transfer> {
  const args = ['-sS', '-H', 'Expect:', ...auth(token), '-F', `file=@${file}`, '-w', WRITE_OUT, url];
  return parse((await runOk('curl', args)).stdout);
}

/** `curl -T FILE` (the raw file as a PUT body, streamed). */
export async function uploadRaw(url: string, file: string, token?: string): Promise<Transfer> {
  const args = ['-sS', '-H', 'Expect:', ...auth(token), '-T', file, '-w', WRITE_OUT, url];
  return parse((await runOk('curl', args)).stdout);
}

/** GET into /dev/null; `extraHeaders` like `Accept: …`. */
export async function download(url: string, token?: string, extraHeaders: string[] = []): Promise<Transfer> {
  const headers = extraHeaders.flatMap((h) => ['-H', h]);
  const args = ['-sS', ...auth(token), ...headers, '-o', '/dev/null', '-w', WRITE_OUT, url];
  return parse((await runOk('curl', args)).stdout);
}

/**
 * GET into /dev/null following redirects (`-L`): the time covers both requests. curl sends the
 * Authorization header to the first host only, as a browser would.
 */
export async function downloadFollowing(url: string, token?: string): Promise<Transfer> {
  const args = ['-sS', '-L', ...auth(token), '-o', '/dev/null', '-w', WRITE_OUT, url];
  return parse((await runOk('curl', args)).stdout);
}

/** Where a GET of `url` redirects to (its Location), without following it. */
export async function redirectTarget(url: string, token?: string): Promise<string> {
  const args = ['-sS', ...auth(token), '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', url];
  const [status, location] = (await runOk('curl', args)).stdout.trim().split(' ');
  if (!status?.startsWith('3') || !location) throw new Error(`GET ${url}: HTTP ${status}, no redirect`);
  return location;
}

export function expectStatus(transfer: Transfer, status: number, what: string): Transfer {
  if (transfer.status !== status) {
    throw new Error(`${what}: HTTP ${transfer.status} instead of ${status}: ${transfer.body.slice(0, 300)}`);
  }
  return transfer;
}

/** Decimal megabytes per second, like every throughput in the table. */
export function mbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e6;
}
