import fs from 'node:fs';
import path from 'node:path';
import { run } from './proc.ts';

/**
 * HTTP load from wrk (Debian's package), one thread: on a two-core machine the other core is the
 * server's. wrk is C and keeps many connections busy for a fraction of the CPU a Node load
 * generator would take from the server under test. Its Lua `done` hook prints the exact numbers
 * as JSON (microseconds), so nothing is parsed out of its human-readable report.
 */
export interface LoadOptions {
  url: string;
  connections: number;
  seconds: number;
  headers?: string[];
  /** Lua that runs before the report hook (request/response functions), e.g. loginScript(). */
  lua?: string;
  /** Scratch directory for the script file. */
  tmp: string;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Responses other than 2xx/3xx. */
  non2xx: number;
  socketErrors: number;
  /** Status counts, when the script counts them (loginScript). */
  statuses: Record<string, number>;
}

const REPORT = `
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local counted = {}
  for _, t in ipairs(threads) do
    local c = t:get("counted")
    if c then for k, v in pairs(c) do counted[k] = (counted[k] or 0) + v end end
  end
  local parts = {}
  for k, v in pairs(counted) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests":%d,"duration_us":%.0f,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f,"statuses":{%s}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(parts, ",")))
end
`;

let scripts = 0;

export async function load(options: LoadOptions): Promise<LoadResult> {
  const script = path.join(options.tmp, `wrk-${scripts++}.lua`);
  fs.writeFileSync(script, `${options.lua ?? ''}\n${REPORT}`);
  const headers = (options.headers ?? []).flatMap((h) => ['-H', h]);
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--timeout', '10s', ...headers];
  const result = await run('wrk', [...args, '-s', script, options.url], {
    timeoutMs: (options.seconds + 60) * 1000,
  });
  fs.rmSync(script, { force: true });
  const line = /^WRK_JSON (.*)$/m.exec(result.stdout)?.[1];
  if (result.code !== 0 || line === undefined) {
    throw new Error(`wrk failed (${result.code}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
  const r = JSON.parse(line) as Record<string, number> & { statuses: Record<string, number> };
  const seconds = r.duration_us! / 1e6;
  return {
    requests: r.requests!,
    seconds,
    rps: r.requests! / seconds,
    p50Ms: r.p50_us! / 1000,
    p99Ms: r.p99_us! / 1000,
    maxMs: r.max_us! / 1000,
    non2xx: r.status!,
    socketErrors: r.connect! + r.read! + r.write! + r.timeout!,
    statuses: r.statuses,
  };
}

/** A run that measures must have measured only successes: a 401 storm would look very fast. */
export function expectClean(result: LoadResult, what: string): LoadResult {
  if (result.non2xx > 0 || result.socketErrors > 0 || result.requests === 0) {
    throw new Error(
      `${what}: ${result.requests} requests, ${result.non2xx} non-2xx, ${result.socketErrors} socket errors`,
    );
  }
  return result;
}

/**
 * POST /api/auth/login with a wrong password for a new random username each time: a username that
 * failed 5 times is locked (429 without any hashing), so a fixed one would soon cost nothing.
 * Counts answers by status.
 */
export function loginScript(): string {
  return `
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counted = {}
function init(args) math.randomseed(os.time() + math.random(1, 1000000)) end
function request()
  local body = string.format('{"username":"u%d%d","password":"wrong-password"}', math.random(1, 1000000000), math.random(1, 1000000000))
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  local k = tostring(status)
  counted[k] = (counted[k] or 0) + 1
end
`;
}
