import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { until } from './common.ts';
import { required } from './requirements.ts';

/**
 * nginx for the tests, running deploy/nginx.conf itself: a throwaway prefix directory with its
 * own temp paths and logs, one process in the foreground (`master_process off`), the template's
 * upstream servers, `listen` port and blob directory replaced by the test's own.
 */
const ROOT = path.resolve(import.meta.dirname, '..', '..');

function findNginx(): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    const candidate = path.join(dir, 'nginx');
    if (dir && spawnSync(candidate, ['-v']).status === 0) return candidate;
  }
  return undefined;
}

export const nginxBin = findNginx();

/** Whether nginx tests can run (test/helpers/requirements.ts: a skip on a developer machine, a failure on CI). */
export function nginxAvailable(what: string): boolean {
  return required(nginxBin !== undefined, `nginx (for ${what})`, 'apt-get install nginx (.ci/run does)');
}

export interface TestNginx {
  base: string;
  process: ChildProcess;
  accessLog: string;
  errorLog: string;
  /** What nginx wrote to its error log so far (for failure messages). */
  errors(): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts nginx with deploy/nginx.conf in `dir` (created; must be reachable by nginx), balancing
 * over `upstreams` (host:port), serving blobs from `blobRoot` in the internal location.
 */
export async function startNginx(options: {
  dir: string;
  upstreams: string[];
  blobRoot?: string;
  /** An access log format (default: nginx's combined). */
  logFormat?: string;
  /** false: no access log (benchmarks). */
  accessLog?: boolean;
}): Promise<TestNginx> {
  if (!nginxBin) throw new Error('no nginx binary');
  const prefix = options.dir;
  await fs.mkdir(prefix, { recursive: true, mode: 0o755 });
  const port = await freePort();
  const template = await fs.readFile(path.join(ROOT, 'deploy', 'nginx.conf'), 'utf8');
  const site = renderSite(template, options.upstreams, port, options.blobRoot);
  const accessLog = path.join(prefix, 'access.log');
  const errorLog = path.join(prefix, 'error.log');
  const conf = path.join(prefix, 'nginx.conf');
  await fs.writeFile(path.join(prefix, 'stowage.conf'), site);
  await fs.writeFile(
    conf,
    [
      // One process that does not switch users: it reads the test's files as the test's user.
      'master_process off;',
      `error_log ${errorLog} warn;`,
      'events { worker_connections 256; }',
      'http {',
      ...(options.accessLog === false
        ? ['  access_log off;']
        : options.logFormat
          ? [`  log_format test '${options.logFormat}';`, `  access_log ${accessLog} test;`]
          : [`  access_log ${accessLog};`]),
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (t) => `  ${t}_temp_path ${prefix}/${t}_temp;`,
      ),
      `  include ${path.join(prefix, 'stowage.conf')};`,
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn(
    nginxBin,
    ['-p', `${prefix}/`, '-e', errorLog, '-c', conf, '-g', `daemon off; pid ${prefix}/nginx.pid;`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const errors = () => fs.readFile(errorLog, 'utf8').catch(() => '');
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGQUIT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await until(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`nginx exited with ${child.exitCode}: ${output}\n${await errors()}`);
        return (await fetch(`${base}/healthz`).catch(() => null))?.status === 200;
      },
      10_000,
      'nginx answering',
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { base, process: child, accessLog, errorLog, errors, stop };
}

/** deploy/nginx.conf with the test's upstream servers, port and blob directory. */
export function renderSite(template: string, upstreams: string[], port: number, blobRoot?: string): string {
  const serverLine = /^(\s*)server\s+127\.0\.0\.1:\d+\s*;\s*$/gm;
  const matches = [...template.matchAll(serverLine)];
  if (matches.length === 0)
    throw new Error('deploy/nginx.conf: no "server 127.0.0.1:PORT;" lines in the upstream');
  const indent = matches[0]![1] ?? '    ';
  let first = true;
  let site = template.replace(serverLine, () => {
    if (!first) return '';
    first = false;
    return upstreams.map((u) => `${indent}server ${u};`).join('\n');
  });
  if (!/^\s*listen 80;\s*$/m.test(site)) throw new Error('deploy/nginx.conf: no "listen 80;" line');
  site = site.replace(/^(\s*)listen 80;\s*$/m, `$1listen 127.0.0.1:${port};`);
  if (blobRoot !== undefined) {
    const alias = /^(\s*)alias \/var\/lib\/stowage\/blobs\/;\s*$/m;
    if (!alias.test(site)) throw new Error('deploy/nginx.conf: no "alias /var/lib/stowage/blobs/;" line');
    site = site.replace(alias, `$1alias ${blobRoot.replace(/\/?$/, '/')};`);
  }
  return site;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
