import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { PASSWORDS } from '../helpers/app.ts';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.ts';
import { tempDir } from '../helpers/temp.ts';
import { multipart, pdf } from '../media/media-helpers.ts';
import { cleanEnv, runCli, type CliResult } from './cli-helpers.ts';

/** Helpers of the operations CLI tests (backup, restore, fsck): a real server and the real CLI. */

let usersLine: Promise<string> | undefined;

/** A data directory (under a fresh project folder) whose users file holds alice. */
export async function newDataDir(): Promise<{ project: string; dataDir: string }> {
  const project = tempDir('stowage-ops-');
  const dataDir = path.join(project, 'data');
  await fs.mkdir(dataDir, { mode: 0o700 });
  usersLine ??= new PasswordHasher().hash(PASSWORDS.alice).then((hash) => `alice:${hash}\n`);
  await fs.writeFile(path.join(dataDir, 'users'), await usersLine, { mode: 0o600 });
  return { project, dataDir };
}

export function startServer(project: string, env: Record<string, string>): Promise<ServerProcess> {
  return startServerProcess({ cwd: project, env });
}

export function stowage(args: string[], project: string, env: Record<string, string>): Promise<CliResult> {
  return runCli(args, { cwd: project, env: cleanEnv(env) });
}

export async function login(base: string): Promise<string> {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
  });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { accessToken: string }).accessToken;
}

/** A distinct small PDF (the server takes PDFs without decoding them). */
export function distinctPdf(): Buffer {
  return pdf(crypto.randomInt(0, 4096), crypto.randomBytes(12).toString('hex'));
}

/** Uploads `data`; returns the new item's id. */
export async function upload(base: string, token: string, data: Buffer): Promise<string> {
  const form = multipart([{ name: 'file', filename: 'doc.pdf', data, type: 'application/pdf' }]);
  const res = await fetch(`${base}/api/media/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': form.contentType },
    body: form.body,
  });
  if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { id: string }).id;
}

export async function content(
  base: string,
  token: string,
  id: string,
): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${base}/api/media/${id}/content`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The problem lines of fsck's output, sorted. */
export function problemLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .sort();
}
