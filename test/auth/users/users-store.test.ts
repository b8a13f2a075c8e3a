import { chmodSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../../src/auth/passwords.ts';
import { rehashMarker } from '../../../src/auth/user-file.ts';
import { UsersFileParseError } from '../../../src/auth/users-file-io.ts';
import { UsersStore } from '../../../src/auth/users-store.ts';
import type { UsersChange, UsersStoreOptions } from '../../../src/auth/users-store.ts';
import { tempDir } from '../../helpers/temp.ts';
import { eventually } from '../../helpers/eventually.ts';

const H1 = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
const H2 = '$argon2id$v=19$m=19456,t=2,p=1$b3RoZXJzYWx0b3RoZXI$b3RoZXJoYXNob3RoZXJoYXNob3RoZXJoYXNob3RoZXI';

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const open: UsersStore[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function setup(content: string | null, options: UsersStoreOptions = {}, mode = 0o600) {
  const dir = tempDir('stowage-users-store-');
  const file = join(dir, 'users');
  if (content !== null) writeFileSync(file, content, { mode });
  chmodSync(dir, 0o700);
  if (content !== null) chmodSync(file, mode);
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) },
  );
  const store = await UsersStore.open(file, logger, { pollIntervalMs: 200, debounceMs: 30, ...options });
  open.push(store);
  return { dir, file, logs, store };
}

function nextChange(store: UsersStore, timeoutMs = 5_000): Promise<UsersChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no change event')), timeoutMs);
    const off = store.onChange((change) => {
      clearTimeout(timer);
      off();
      resolve(change);
    });
  });
}

/** Replaces the file the way the CLI and most editors do: write a sibling, rename it over. */
function replace(file: string, content: string): void {
  writeFileSync(`${file}.new`, content, { mode: 0o600 });
  renameSync(`${file}.new`, file);
}

describe('UsersStore', () => {
  it('loads users; a missing file means no users', async () => {
    const { store } = await setup(`alice:${H1}\nbob:${H2}:admin\n`);
    expect(store.count).toBe(2);
    expect(store.get('bob')).toEqual({ username: 'bob', hash: H2, roles: ['admin'] });
    expect(store.get('nobody')).toBeUndefined();
    expect(store.list().map((u) => u.username)).toEqual(['alice', 'bob']);
    const empty = await setup(null);
    expect(empty.store.count).toBe(0);
  });

  it('refuses to start on a broken file, naming the line', async () => {
    await expect(setup(`alice:${H1}\nnot a user line\n`)).rejects.toThrow(UsersFileParseError);
    await expect(setup(`alice:${H1}\nnot a user line\n`)).rejects.toThrow(/line 2/);
  });

  it('picks up an in-place edit: added user, changed roles', async () => {
    const { file, store } = await setup(`alice:${H1}\n`);
    const change = nextChange(store);
    writeFileSync(file, `alice:${H1}:admin\nbob:${H2}\n`);
    expect(await change).toEqual({
      added: ['bob'],
      removed: [],
      credentialsChanged: [],
      rolesChanged: ['alice'],
      rehashed: [],
    });
    expect(store.get('alice')?.roles).toEqual(['admin']);
    expect(store.get('bob')?.hash).toBe(H2);
  });

  it('picks up replacement by rename, and reports removed users', async () => {
    const { file, store } = await setup(`alice:${H1}\nbob:${H2}\n`);
    const change = nextChange(store);
    replace(file, `alice:${H1}\n`);
    expect(await change).toMatchObject({ removed: ['bob'], credentialsChanged: [] });
    expect(store.get('bob')).toBeUndefined();
  });

  it('reports a changed password as credentialsChanged', async () => {
    const { file, store } = await setup(`alice:${H1}\nbob:${H2}\n`);
    const change = nextChange(store);
    replace(file, `alice:${H2}\nbob:${H2}\n`);
    expect(await change).toEqual({
      added: [],
      removed: [],
      credentialsChanged: ['alice'],
      rolesChanged: [],
      rehashed: [],
    });
    expect(store.get('alice')?.hash).toBe(H2);
  });

  it('keeps following the file after several replacements', async () => {
    const { file, store } = await setup(`alice:${H1}\n`);
    for (const name of ['bob', 'carol', 'dave']) {
      const change = nextChange(store);
      replace(file, `alice:${H1}\n${name}:${H2}\n`);
      expect((await change).added).toEqual([name]);
    }
    expect(store.count).toBe(2);
  });

  it('sees edits and replacements through the directory watch, without waiting for a poll', async () => {
    const { file, store } = await setup(`alice:${H1}\n`, { pollIntervalMs: 60_000 });
    let change = nextChange(store);
    replace(file, `alice:${H1}\nbob:${H2}\n`);
    expect((await change).added).toEqual(['bob']);
    change = nextChange(store);
    writeFileSync(file, `bob:${H2}\n`);
    expect((await change).removed).toEqual(['alice']);
  });

  it('follows changes by periodic stat alone when watching is unavailable', async () => {
    const { file, store } = await setup(`alice:${H1}\nbob:${H2}\n`, { watch: false, pollIntervalMs: 50 });
    for (const [content, removed] of [
      [`bob:${H2}\n`, 'alice'],
      [`carol:${H1}\n`, 'bob'],
    ] as const) {
      const change = nextChange(store);
      await new Promise((r) => setTimeout(r, 150));
      replace(file, content);
      expect((await change).removed).toEqual([removed]);
    }
  });

  it('keeps the last good state when the file breaks, logs the line (not the hash), recovers later', async () => {
    const { file, store, logs } = await setup(`alice:${H1}\nbob:${H2}\n`);
    replace(file, `alice:${H1}\nbob:${H2}:superuser\n`);
    await eventually(() => expect(logs.some((l) => l.level >= 50 && /line 2/.test(l.msg))).toBe(true));
    expect(store.get('bob')?.roles).toEqual(['user']);
    expect(store.count).toBe(2);
    expect(JSON.stringify(logs)).not.toContain(H1.slice(30));
    expect(JSON.stringify(logs)).not.toContain(H2.slice(30));

    const change = nextChange(store);
    replace(file, `alice:${H1}\n`);
    expect((await change).removed).toEqual(['bob']);
  });

  it('keeps the last good state when the file disappears', async () => {
    const { file, store, logs } = await setup(`alice:${H1}\n`);
    unlinkSync(file);
    await eventually(() => expect(logs.some((l) => l.level === 40 && /missing/.test(l.msg))).toBe(true));
    expect(store.get('alice')).toBeDefined();
    const change = nextChange(store);
    writeFileSync(file, `bob:${H2}\n`);
    expect(await change).toMatchObject({ added: ['bob'], removed: ['alice'] });
  });

  it('emits nothing when the file is rewritten with the same users', async () => {
    const { file, store, logs } = await setup(`alice:${H1}\n`);
    let events = 0;
    store.onChange(() => events++);
    replace(file, `# a comment now\nalice:${H1}\n`);
    await store.refresh();
    expect(events).toBe(0);
    expect(logs.filter((l) => l.msg === 'users file reloaded')).toEqual([]);
  });

  it.each([0o620, 0o602, 0o664])(
    'warns at start when the file mode is %o (writable by others)',
    async (mode) => {
      const { logs } = await setup(`alice:${H1}\n`, {}, mode);
      expect(logs.some((l) => l.level === 40 && /writable by group or others/.test(l.msg))).toBe(true);
    },
  );

  it('does not warn about a 0600 file', async () => {
    const { logs } = await setup(`alice:${H1}\n`);
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });

  it('warns about users whose hash it will refuse, without logging the hash', async () => {
    const { logs } = await setup(`alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n`);
    const warning = logs.find((l) => /unsupported password hash/.test(l.msg));
    expect(warning?.username).toBe('alice');
    expect(JSON.stringify(logs)).not.toContain('W6ph5Mm5Pz8');
  });
});

describe('UsersStore.upgradeHash', () => {
  const H3 = '$argon2id$v=19$m=19456,t=2,p=1$dGhpcmRzYWx0dGhpcmQ$dGhpcmRoYXNodGhpcmRoYXNodGhpcmRoYXNodGhpcmQ';

  it('rewrites one line, keeping its roles and the other lines byte for byte', async () => {
    const others = `# team\n  bob:${H2}  # keep this spacing\n\ncarol:${H1}:user,admin\n`;
    const { file, store } = await setup(`alice:${H1}:admin\n${others}`);
    const change = nextChange(store);
    await store.upgradeHash('alice', H1, () => Promise.resolve(H3));
    const text = readFileSync(file, 'utf8');
    expect(text).toBe(`alice:${H3}:admin # rehash-of:${rehashMarker(H1)}\n${others}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await change).toEqual({
      added: [],
      removed: [],
      credentialsChanged: [],
      rolesChanged: [],
      rehashed: ['alice'],
    });
    expect(store.get('alice')).toMatchObject({ hash: H3, roles: ['admin'] });
  });

  it('is told apart from a new password by every store following the file', async () => {
    const { file, store } = await setup(`alice:${H1}\nbob:${H2}\n`);
    // A second instance following the same file sees the rehash as a rehash too.
    const logger = pino({ level: 'silent' });
    const other = await UsersStore.open(file, logger, { pollIntervalMs: 200, debounceMs: 30 });
    open.push(other);
    const seen = nextChange(other);
    await store.upgradeHash('alice', H1, () => Promise.resolve(H3));
    expect(await seen).toMatchObject({ rehashed: ['alice'], credentialsChanged: [] });

    // Another hash under the old marker is a new password: the marker names the hash it replaced.
    const edited = nextChange(other);
    replace(file, `alice:${H2} # rehash-of:${rehashMarker(H1)}\nbob:${H2}\n`);
    expect(await edited).toMatchObject({ rehashed: [], credentialsChanged: ['alice'] });
    // A file put back to the line a rehash replaced holds the same password: not a change either.
    const rehashed = nextChange(other);
    await store.upgradeHash('alice', H2, () => Promise.resolve(H3));
    expect(await rehashed).toMatchObject({ rehashed: ['alice'], credentialsChanged: [] });
    const putBack = nextChange(other);
    replace(file, `alice:${H2}\nbob:${H2}\n`);
    expect(await putBack).toMatchObject({ rehashed: ['alice'], credentialsChanged: [] });
    // So is a bare new hash, and a hash change of a line that was never rehashed.
    const again = nextChange(other);
    replace(file, `alice:${H1}\nbob:${H3} # rehash-of:0123456789abcdef\n`);
    expect(await again).toMatchObject({ rehashed: [], credentialsChanged: ['alice', 'bob'] });
  });

  it('writes nothing when the line changed since the login, or the user is gone', async () => {
    const content = `alice:${H2}\n`;
    const { file, store } = await setup(content);
    let computed = 0;
    const rehash = () => {
      computed++;
      return Promise.resolve(H3);
    };
    await store.upgradeHash('alice', H1, rehash);
    await store.upgradeHash('nobody', H1, rehash);
    expect(readFileSync(file, 'utf8')).toBe(content);
    expect(computed).toBe(2);
  });

  it('logs a failure without the hash and leaves the file as it was', async () => {
    const content = `alice:${H1}\n`;
    const { file, store, logs } = await setup(content);
    await store.upgradeHash('alice', H1, () => Promise.reject(new Error('hasher busy')));
    expect(readFileSync(file, 'utf8')).toBe(content);
    const warning = logs.find((l) => l.msg.includes('could not upgrade a password hash'));
    expect(warning).toMatchObject({ username: 'alice' });
    expect(JSON.stringify(logs)).not.toContain(H1);
  });
});

describe('UsersStore.ensureInitialAdmin', () => {
  const hasher = new PasswordHasher();

  it('creates an admin with a random password when there are no users, once', async () => {
    const dir = tempDir('stowage-users-admin-');
    const file = join(dir, 'data', 'users');
    const password = await UsersStore.ensureInitialAdmin(file, hasher);
    expect(password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^admin:\$argon2id\$[^:]+:admin\n$/);
    expect(text).not.toContain(password!);
    expect(await hasher.verify(text.split(':')[1]!, password!)).toBe(true);
    expect(await UsersStore.ensureInitialAdmin(file, hasher)).toBeNull();
  });

  it('leaves a file that has users alone', async () => {
    const dir = tempDir('stowage-users-admin-');
    const file = join(dir, 'users');
    writeFileSync(file, `alice:${H1}\n`);
    expect(await UsersStore.ensureInitialAdmin(file, hasher)).toBeNull();
    expect(readFileSync(file, 'utf8')).toBe(`alice:${H1}\n`);
  });
});
