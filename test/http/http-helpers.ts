import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import type { TestApp } from '../helpers/app.ts';
import { expectError } from '../helpers/contract.ts';

export { expectError };
export { eventually } from '../helpers/eventually.ts';

/** 401 UNAUTHENTICATED with the Bearer challenge. */
export function expectUnauthenticated(res: LightMyRequestResponse): void {
  expectError(res, 401, 'UNAUTHENTICATED');
  expect(res.headers['www-authenticate']).toMatch(/^Bearer\b/);
}

export async function me(t: TestApp, token: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'GET', url: '/api/auth/me', headers: t.auth(token) });
}

export async function refresh(t: TestApp, refreshToken: string): Promise<LightMyRequestResponse> {
  return t.app.inject({ method: 'POST', url: '/api/auth/refresh', payload: { refreshToken } });
}

export async function login(
  t: TestApp,
  username: string,
  password: string,
  remoteAddress?: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return t.app.inject({
    method: 'POST',
    url: '/api/auth/login',
    payload: { username, password },
    headers,
    ...(remoteAddress ? { remoteAddress } : {}),
  });
}

/**
 * Rewrites the users file the way the CLI does (temp file + rename), keeping or changing lines.
 * `edit` gets each non-empty line and returns its replacement, or null to drop it.
 */
export async function editUsersFile(t: TestApp, edit: (line: string) => string | null): Promise<void> {
  const text = await fs.readFile(t.config.usersFile, 'utf8');
  const lines = text
    .split('\n')
    .filter((l) => l !== '')
    .map(edit)
    .filter((l): l is string => l !== null);
  const tmp = path.join(path.dirname(t.config.usersFile), `.users.${process.pid}.tmp`);
  await fs.writeFile(tmp, lines.join('\n') + '\n', { mode: 0o600 });
  await fs.rename(tmp, t.config.usersFile);
}

/** Parses Fastify's printRoutes tree (commonPrefix: false) into full paths and their methods. */
export function registeredRoutes(tree: string): { path: string; methods: string[] }[] {
  const parents: string[] = [];
  const routes: { path: string; methods: string[] }[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    const full = (depth > 0 ? parents[depth - 1]! : '') + m[2]!;
    parents[depth] = full;
    parents.length = depth + 1;
    if (m[3]) routes.push({ path: full.replace(/(.)\/$/, '$1'), methods: m[3].split(', ') });
  }
  return routes;
}
