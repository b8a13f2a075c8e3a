import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, ROOT, type Context } from './context.ts';
import { freePort, spawnTracked, stopChild, tail, waitForHttp } from './proc.ts';
import { GiB } from './rss.ts';

export interface Server {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** The parent's environment without anything that would change how Stowage or Node start. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('STOWAGE_') && k !== 'NODE_OPTIONS') env[k] = v;
  }
  return env;
}

let unexpectedExits = 0;

/** How many servers have exited without being asked to (killed from outside, or crashed). */
export function unexpectedExitCount(): number {
  return unexpectedExits;
}

async function startProcess(
  ctx: Context,
  name: string,
  command: string,
  args: string[],
  port: number,
  options: { env?: Record<string, string>; cwd?: string; readyPath?: string },
): Promise<Server> {
  const child: ChildProcess = spawnTracked(command, args, {
    env: { ...cleanEnv(), ...options.env },
    cwd: options.cwd ?? ROOT,
  });
  const output = [tail(child.stdout), tail(child.stderr)];
  const url = `http://127.0.0.1:${port}`;
  let stopped = false;
  // A server that dies under load makes every later request fail; say why, once, where it happened.
  child.once('exit', (code, signal) => {
    if (stopped) return;
    unexpectedExits++;
    const how = signal ?? `code ${code}`;
    ctx.log(`${name} (pid ${child.pid}) exited unexpectedly: ${how}\n${output.map((o) => o()).join('\n')}`);
  });
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stopChild(child);
  };
  ctx.defer(stop);
  try {
    await waitForHttp(url + (options.readyPath ?? '/'), child, () => output.map((o) => o()).join('\n'));
  } catch (error) {
    await stop();
    throw error;
  }
  return { name, url, pid: child.pid!, stop };
}

/** A bare baseline program from bench/baselines, given its port, arguments and extra environment. */
export async function startBaseline(
  ctx: Context,
  script: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<Server> {
  const port = await freePort();
  const file = path.join(BENCH, 'baselines', script);
  return startProcess(ctx, script, process.execPath, [file, String(port), ...args], port, { env });
}

export interface Stowage extends Server {
  dataDir: string;
  /** A fresh access token for the benchmark user. */
  login(): Promise<string>;
  /** Resolves once no stored image waits for its thumbnail to be rendered ahead (per /metrics). */
  thumbnailsAhead(): Promise<void>;
}

/** A sample's value in Prometheus text (the first with that name, any labels), NaN when absent. */
export function metric(text: string, name: string): number {
  const line = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return line ? Number(line[1]) : NaN;
}

/** For figures that measure a first render, or uploads without the background work behind each. */
export const NO_THUMBNAILS_AHEAD = { STOWAGE_THUMBNAILS_AHEAD: 'off' } as const;

/**
 * The V8 flags bin/stowage runs the server with (its `NODE_FLAGS=(…)` line), so that the
 * benchmark measures the server as deployed without going through bin/stowage (which may run
 * `npm ci`).
 */
export function serverNodeFlags(): string[] {
  const script = fs.readFileSync(path.join(ROOT, 'bin', 'stowage'), 'utf8');
  const line = /^NODE_FLAGS=\(([^)]*)\)$/m.exec(script);
  if (!line) throw new Error('bin/stowage has no NODE_FLAGS=(…) line');
  return line[1]!.split(/\s+/).filter(Boolean);
}

/**
 * The real server, started the way an operator starts it (bin/stowage: `node FLAGS src/main.ts`), with its own data
 * directory (kept across restarts, so a later phase can read what an earlier one stored).
 */
export async function startStowage(
  ctx: Context,
  dataDir: string,
  extraEnv: Record<string, string> = {},
): Promise<Stowage> {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const usersFile = path.join(dataDir, 'users');
  if (!fs.existsSync(usersFile)) fs.copyFileSync(ctx.user.usersFile, usersFile);
  const port = await freePort();
  const env = {
    STOWAGE_DATA_DIR: dataDir,
    STOWAGE_HOST: '127.0.0.1',
    STOWAGE_PORT: String(port),
    STOWAGE_LOG_LEVEL: 'warn',
    // Off: the per-user request limit would cap every load test at its own rate.
    STOWAGE_RATE_LIMIT_PER_MINUTE: '0',
    // Off too: every load client is 127.0.0.1, and the login storm would use up its anonymous budget.
    STOWAGE_ANON_RATE_LIMIT_PER_MINUTE: '0',
    STOWAGE_LOGIN_ADDRESS_LIMIT: '1000000000',
    STOWAGE_MAX_UPLOAD_BYTES: String(5 * GiB),
    STOWAGE_ACCESS_TOKEN_TTL: '86400',
    ...extraEnv,
  };
  // cwd = the data dir: a developer's .env in the repository must not change the measured server.
  // The title names the process as the benchmark's in `ps`, and keeps it out of anyone's
  // `pkill -f src/main.ts` on a shared machine (that stopped servers mid-run more than once).
  const server = await startProcess(
    ctx,
    'stowage',
    process.execPath,
    [...serverNodeFlags(), `--title=stowage-bench-${path.basename(dataDir)}`, path.join(ROOT, 'src/main.ts')],
    port,
    {
      env,
      cwd: dataDir,
      readyPath: '/healthz',
    },
  );
  const login = async () => {
    const res = await fetch(`${server.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: ctx.user.name, password: ctx.user.password }),
    });
    const body = (await res.json()) as { accessToken?: string };
    if (!res.ok || !body.accessToken) throw new Error(`login failed: ${res.status} ${JSON.stringify(body)}`);
    return body.accessToken;
  };
  const thumbnailsAhead = async () => {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const pending = metric(text, 'stowage_thumbnails_ahead_pending');
      if (Number.isNaN(pending)) throw new Error('/metrics has no stowage_thumbnails_ahead_pending');
      if (pending === 0) return;
      if (Date.now() > deadline) throw new Error(`${pending} thumbnails still wait to be rendered ahead`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  return { ...server, dataDir, login, thumbnailsAhead };
}

/** Deletes a stored item (so that gigabytes do not pile up in the scratch directory). */
export async function deleteMedia(server: Server, token: string, id: string): Promise<void> {
  const res = await fetch(`${server.url}/api/media/${id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${token}` },
  });
  await res.arrayBuffer();
  if (res.status !== 204) throw new Error(`DELETE /api/media/${id}: ${res.status}`);
}

/**
 * Debian's nginx serving `root` with sendfile: one process (no master: nothing can be orphaned;
 * the data path is a worker's), no access log, every path it writes inside the scratch directory.
 */
export async function startNginx(ctx: Context, root: string): Promise<Server> {
  const port = await freePort();
  const prefix = fs.mkdtempSync(path.join(ctx.tmp, 'nginx-'));
  const temp = (name: string) => path.join(prefix, name);
  const conf = `
master_process off;
daemon off;
pid ${temp('nginx.pid')};
error_log ${temp('error.log')} warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${temp('body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location = /ready { return 200 "ok"; }
  }
}
`;
  fs.writeFileSync(temp('nginx.conf'), conf);
  return startProcess(
    ctx,
    'nginx',
    nginxBinary(),
    ['-p', prefix, '-e', temp('error.log'), '-c', temp('nginx.conf')],
    port,
    { readyPath: '/ready' },
  );
}

export function nginxBinary(): string {
  return fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
}
