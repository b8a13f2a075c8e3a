import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseUsersFile } from '../../src/auth/user-file.ts';
import type { UserRecord } from '../../src/auth/user-file.ts';
import { tempDir } from '../helpers/temp.ts';

export const CLI = resolve(import.meta.dirname, '../../src/cli/main.ts');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Env without any STOWAGE_* from the developer's shell, so tests see only what they set. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('STOWAGE_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs `node src/cli/main.ts ARGS` with `input` piped to stdin (stdin is then not a TTY). */
export function runCli(
  args: string[],
  options: { input?: string; cwd: string; env?: Record<string, string> },
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: options.env ?? cleanEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

export function tempProject(): { cwd: string; usersFile: string } {
  const cwd = tempDir('stowage-cli-');
  return { cwd, usersFile: join(cwd, 'data', 'users') };
}

export function readUsers(file: string): Map<string, UserRecord> {
  const { users, errors } = parseUsersFile(readFileSync(file, 'utf8'));
  if (errors.length > 0) throw new Error(`users file has errors: ${JSON.stringify(errors)}`);
  return users;
}
