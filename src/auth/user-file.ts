/**
 * The users file format (htpasswd-compatible): `name:hash` or `name:hash:role1,role2`, `#` comments,
 * blank lines. Pure functions only, so the server, the CLI and the tests share one definition.
 *
 * Error messages carry line numbers and never a field's value: a malformed line may well hold a
 * password hash in the position where a name or role was expected, and these messages reach logs.
 */
import { createHash } from 'node:crypto';

export type Role = 'admin' | 'user';

export const ROLES: readonly Role[] = ['admin', 'user'];
export const DEFAULT_ROLES: readonly Role[] = ['user'];

export interface UserRecord {
  username: string;
  hash: string;
  roles: Role[];
  /**
   * Set when the server rewrote this user's hash with the same password in a stronger scheme (a
   * bcrypt line upgraded to argon2id at a login): rehashMarker() of the hash it replaced. It is kept
   * in the line as the comment `# rehash-of:…`, so that every instance following the file can tell
   * this change from a new password, which must end the user's sessions while a rehash must not.
   */
  rehashOf?: string;
}

const REHASH_COMMENT_RE = /^\s*rehash-of:([0-9a-f]{16})\s*$/;

/**
 * The marker a rehashed line carries: a short digest of the hash it replaced. It shows that the
 * writer had that hash in hand, so a line edited later (keeping an old comment) is not mistaken for
 * a rehash, and it reveals nothing of the password (a digest of a salted, slow hash).
 */
export function rehashMarker(previousHash: string): string {
  return createHash('sha256').update(previousHash).digest('hex').slice(0, 16);
}

export interface UsersFileError {
  line: number;
  message: string;
}

/** One physical line of the file, kept so a rewrite can preserve comments and order. */
export interface FileLine {
  raw: string;
  /** Set when the line defines a user. */
  username?: string;
}

export interface ParsedUsersFile {
  users: Map<string, UserRecord>;
  errors: UsersFileError[];
  lines: FileLine[];
}

export const MIN_PASSWORD_LENGTH = 8;
/** Long enough for any passphrase or generated secret, short enough to bound hashing input. */
export const MAX_PASSWORD_LENGTH = 1024;

const USERNAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Returns why `name` is not an acceptable username, or null when it is. */
export function validateUsername(name: string): string | null {
  if (USERNAME_RE.test(name)) return null;
  if (name.length === 0) return 'the username is empty';
  if (name.length > 64) return 'the username is longer than 64 characters';
  return 'the username must match [a-z0-9][a-z0-9._-]{0,63}: lower-case letters, digits, ".", "_" and "-", starting with a letter or digit';
}

/** Returns why `password` is not acceptable, or null when it is. Lengths count characters, not bytes. */
export function validatePassword(password: string): string | null {
  const length = [...password].length;
  if (length < MIN_PASSWORD_LENGTH)
    return `the password must be at least ${MIN_PASSWORD_LENGTH} characters long`;
  if (length > MAX_PASSWORD_LENGTH)
    return `the password must be at most ${MAX_PASSWORD_LENGTH} characters long`;
  return null;
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

function splitLines(text: string): string[] {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  const lines = body.split(/\r?\n/);
  // A final newline yields one empty trailing element that is not a line of its own.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function parseUsersFile(text: string): ParsedUsersFile {
  const users = new Map<string, UserRecord>();
  const errors: UsersFileError[] = [];
  const lines: FileLine[] = [];

  splitLines(text).forEach((raw, index) => {
    const lineNo = index + 1;
    const hashAt = raw.indexOf('#');
    const content = (hashAt === -1 ? raw : raw.slice(0, hashAt)).trim();
    if (content === '') {
      lines.push({ raw });
      return;
    }
    const fail = (message: string): void => {
      errors.push({ line: lineNo, message });
      lines.push({ raw });
    };
    const fields = content.split(':');
    if (fields.length < 2) return fail('expected "name:hash" or "name:hash:roles"');
    if (fields.length > 3) return fail('too many ":"-separated fields');
    const [username = '', hash = '', rolesField] = fields.map((f) => f.trim());
    if (validateUsername(username) !== null) return fail('invalid username');
    if (hash === '') return fail('empty password hash');
    const roles = parseRoles(rolesField);
    if (roles === null) return fail(`unknown role (allowed: ${ROLES.join(', ')})`);
    if (users.has(username)) return fail('duplicate username');
    const rehashOf = hashAt === -1 ? undefined : REHASH_COMMENT_RE.exec(raw.slice(hashAt + 1))?.[1];
    users.set(username, { username, hash, roles, ...(rehashOf ? { rehashOf } : {}) });
    lines.push({ raw, username });
  });

  return { users, errors, lines };
}

function parseRoles(field: string | undefined): Role[] | null {
  if (field === undefined || field === '') return [...DEFAULT_ROLES];
  const roles: Role[] = [];
  for (const part of field.split(',')) {
    const role = part.trim();
    if (!isRole(role)) return null;
    if (!roles.includes(role)) roles.push(role);
  }
  return roles;
}

export function formatUserLine(user: UserRecord): string {
  const plainUser = user.roles.length === 1 && user.roles[0] === 'user';
  const line = plainUser
    ? `${user.username}:${user.hash}`
    : `${user.username}:${user.hash}:${user.roles.join(',')}`;
  return user.rehashOf ? `${line} # rehash-of:${user.rehashOf}` : line;
}

function sameUser(a: UserRecord, b: UserRecord): boolean {
  return a.hash === b.hash && a.roles.length === b.roles.length && a.roles.every((r) => b.roles.includes(r));
}

/**
 * Renders `users` as file text. With `previous` (the parse of the text being replaced), comments,
 * blank lines and the order of existing users are kept, and the lines of unchanged users stay
 * byte-for-byte as they were; new users are appended. Output always uses LF and ends with one.
 */
export function serializeUsers(users: ReadonlyMap<string, UserRecord>, previous?: ParsedUsersFile): string {
  const out: string[] = [];
  const written = new Set<string>();
  for (const line of previous?.lines ?? []) {
    if (line.username === undefined) {
      out.push(line.raw);
      continue;
    }
    const user = users.get(line.username);
    if (!user || written.has(user.username)) continue;
    const before = previous?.users.get(line.username);
    out.push(before && sameUser(before, user) ? line.raw : formatUserLine(user));
    written.add(user.username);
  }
  for (const user of users.values()) {
    if (!written.has(user.username)) out.push(formatUserLine(user));
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** One line per problem, for logs and CLI errors. */
export function describeErrors(errors: readonly UsersFileError[]): string {
  return errors.map((e) => `line ${e.line}: ${e.message}`).join('; ');
}
