import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { ROOT } from './context.ts';
import { run } from './proc.ts';
import { nginxBinary } from './servers.ts';

/** The machine and every version a number depends on, for BENCHMARKS.md. */
export async function describeMachine(tmp: string): Promise<string[]> {
  const cpus = os.cpus();
  const distro = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readOr('/etc/os-release'))?.[1] ?? 'unknown';
  const db = new Database(':memory:');
  const sqlite = (db.prepare('select sqlite_version() as v').get() as { v: string }).v;
  db.close();
  const df = (await run('df', ['-hT', tmp])).stdout.trim().split('\n')[1]?.split(/\s+/) ?? [];
  const tool = async (command: string, args: string[], pattern: RegExp) => {
    const out = await run(command, args).catch(() => ({ stdout: '', stderr: '' }));
    return pattern.exec(`${out.stdout}\n${out.stderr}`)?.[1] ?? 'not found';
  };
  return [
    `CPU: ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} cores visible; RAM ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `OS: ${distro}, Linux ${os.release()}`,
    `Scratch disk: ${df[1] ?? '?'} filesystem on ${df[0] ?? '?'} (${df[2] ?? '?'})`,
    `Node ${process.versions.node}; fastify ${pkg('fastify')}, @fastify/multipart ${pkg('@fastify/multipart')}, ` +
      `@tus/file-store ${pkg('@tus/file-store')}, tus-js-client ${pkg('tus-js-client')}`,
    `sharp ${sharp.versions.sharp ?? pkg('sharp')} (libvips ${sharp.versions.vips}); better-sqlite3 ${pkg('better-sqlite3')} ` +
      `(SQLite ${sqlite}); @node-rs/argon2 ${pkg('@node-rs/argon2')}`,
    `nginx ${await tool(nginxBinary(), ['-v'], /nginx\/(\S+)/)}, wrk ${await tool('wrk', ['-v'], /wrk (\S+)/)}, ` +
      `curl ${await tool('curl', ['--version'], /curl (\S+)/)}, ClamAV ${await tool('clamdscan', ['-V'], /ClamAV (\S+?)(?:\/|$|\s)/m)}`,
  ];
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function pkg(name: string): string {
  const json = readOr(path.join(ROOT, 'node_modules', name, 'package.json'));
  return json ? (JSON.parse(json) as { version: string }).version : '?';
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');
}
