import { describe, expect, it } from 'vitest';
import {
  parseUsersFile,
  serializeUsers,
  validatePassword,
  validateUsername,
} from '../../../src/auth/user-file.ts';

const H1 = '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g';
const H2 = '$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui';

describe('parseUsersFile', () => {
  it('reads name:hash and name:hash:roles lines, defaulting to the user role', () => {
    const { users, errors } = parseUsersFile(`alice:${H1}\nbob:${H2}:admin,user\ncarol:${H1}:admin\n`);
    expect(errors).toEqual([]);
    expect(users.get('alice')).toEqual({ username: 'alice', hash: H1, roles: ['user'] });
    expect(users.get('bob')).toEqual({ username: 'bob', hash: H2, roles: ['admin', 'user'] });
    expect(users.get('carol')?.roles).toEqual(['admin']);
  });

  it('tolerates comments, blank lines, CRLF, a BOM and a missing final newline', () => {
    const text = `\uFEFF# users\r\n\r\n   \r\nalice:${H1}\r\n  # indented comment\r\nbob:${H2}:admin # trailing comment`;
    const { users, errors } = parseUsersFile(text);
    expect(errors).toEqual([]);
    expect([...users.keys()]).toEqual(['alice', 'bob']);
    expect(users.get('alice')?.hash).toBe(H1);
    expect(users.get('bob')?.roles).toEqual(['admin']);
  });

  it('an empty file has no users and no errors', () => {
    expect(parseUsersFile('')).toMatchObject({ errors: [] });
    expect(parseUsersFile('').users.size).toBe(0);
  });

  it('reports bad lines by number without quoting their content', () => {
    const text = [
      `alice:${H1}`,
      `Alice:${H1}`,
      'bob:',
      `carol:${H1}:root`,
      `alice:${H2}`,
      H1,
      `dave:${H1}:admin:extra`,
      `../x:${H1}`,
    ].join('\n');
    const { users, errors } = parseUsersFile(text);
    expect(errors.map((e) => e.line)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(errors[0]?.message).toMatch(/username/);
    expect(errors[1]?.message).toMatch(/empty password hash/);
    expect(errors[2]?.message).toMatch(/role/);
    expect(errors[3]?.message).toMatch(/duplicate/);
    for (const e of errors) expect(e.message).not.toContain('$');
    // The first definition of a duplicated name stands.
    expect(users.get('alice')?.hash).toBe(H1);
  });
});

describe('serializeUsers', () => {
  it('round-trips through the parser', () => {
    const { users } = parseUsersFile(`alice:${H1}\nbob:${H2}:admin`);
    const text = serializeUsers(users);
    expect(text).toBe(`alice:${H1}\nbob:${H2}:admin\n`);
    expect(parseUsersFile(text).users).toEqual(users);
  });

  it('keeps comments, order and untouched lines; appends new users; drops removed ones', () => {
    const original = `# managed by ops\r\nalice:${H1} # the boss\r\n\r\nbob:${H2}\r\ncarol:${H1}:admin\r\n`;
    const parsed = parseUsersFile(original);
    const users = new Map(parsed.users);
    users.delete('bob');
    users.set('carol', { username: 'carol', hash: H2, roles: ['admin'] });
    users.set('dave', { username: 'dave', hash: H1, roles: ['user'] });
    expect(serializeUsers(users, parsed)).toBe(
      `# managed by ops\nalice:${H1} # the boss\n\ncarol:${H2}:admin\ndave:${H1}\n`,
    );
  });
});

describe('validation', () => {
  it.each(['alice', 'a', '0', 'a.b_c-d', 'x'.repeat(64)])('accepts the username %j', (name) => {
    expect(validateUsername(name)).toBeNull();
  });

  it.each(['', '../x', 'Admin', 'a b', 'x'.repeat(65), '.hidden', '-x', 'a:b', 'a\nb', 'émile', 'a/b'])(
    'refuses the username %j',
    (name) => {
      expect(validateUsername(name)).toEqual(expect.any(String));
    },
  );

  it('wants passwords of 8 to 1024 characters, counted as characters', () => {
    expect(validatePassword('1234567')).toMatch(/at least 8/);
    expect(validatePassword('12345678')).toBeNull();
    expect(validatePassword('🔑'.repeat(7))).toMatch(/at least 8/);
    expect(validatePassword('🔑'.repeat(8))).toBeNull();
    expect(validatePassword('x'.repeat(1024))).toBeNull();
    expect(validatePassword('x'.repeat(1025))).toMatch(/at most 1024/);
  });
});
