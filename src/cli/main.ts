/**
 * `stowage users add|passwd|remove|list`: manages the users file that the server follows
 * (`stowage migrate` is handed to migrate.ts).
 * Passwords come from a no-echo prompt on a terminal or from stdin (`--password-stdin`), never
 * from argv, where other local users could read them in the process list.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, parseEnv } from 'node:util';
import { PasswordHasher } from '../auth/passwords.ts';
import { isRole, validatePassword, validateUsername } from '../auth/user-file.ts';
import type { Role } from '../auth/user-file.ts';
import {
  readUsersFile,
  updateUsersFile,
  UsersFileLockError,
  UsersFileParseError,
} from '../auth/users-file-io.ts';
import { InputError, promptHidden, readPasswordLine } from './password-input.ts';
import { backupCommand } from './backup.ts';
import { fsckCommand } from './fsck.ts';
import { restoreCommand } from './restore.ts';
import { runMigrate } from './migrate.ts';
import type { CliInput } from './password-input.ts';

export interface CliIo {
  stdin: CliInput;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: Record<string, string | undefined>;
  cwd: string;
}

const USAGE = `usage:
  stowage users add NAME [--role admin] [--password-stdin]
  stowage users passwd NAME [--password-stdin]
  stowage users remove NAME
  stowage users list
  stowage backup [--copy] DIR
  stowage restore DIR
  stowage fsck [--verify] [--repair] [--min-age SECONDS]
  stowage migrate --to-database URL [--to-storage s3]   (see "stowage migrate --help")

The users file is STOWAGE_USERS_FILE, else $STOWAGE_DATA_DIR/users, else ./data/users.
Without --password-stdin the password is asked for on the terminal, without echo.
`;

/** An error the user can fix; `code` is the exit status (2 for usage errors). */
class CliError extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.code = code;
  }
}

/** The real environment wins over `.env` in the working directory, as for the server. */
export function resolveUsersFile(env: Record<string, string | undefined>, cwd: string): string {
  const dotenv = path.join(cwd, '.env');
  const merged = existsSync(dotenv) ? { ...parseEnv(readFileSync(dotenv, 'utf8')), ...env } : env;
  if (merged.STOWAGE_USERS_FILE) return path.resolve(cwd, merged.STOWAGE_USERS_FILE);
  return path.resolve(cwd, merged.STOWAGE_DATA_DIR || './data', 'users');
}

interface Parsed {
  command: string;
  name: string | undefined;
  roles: string[] | undefined;
  passwordStdin: boolean;
  help: boolean;
}

function parse(argv: string[]): Parsed {
  if (argv.some((a) => a === '--password' || a.startsWith('--password=') || a === '-p')) {
    throw new CliError(
      'passwords are never accepted on the command line; use --password-stdin or the prompt',
      2,
    );
  }
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        role: { type: 'string', multiple: true },
        'password-stdin': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const option = /'([^']+)'/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option)
      throw new CliError(`unknown option "${option}"`, 2);
    throw new CliError(e.message.split('\n')[0] ?? 'invalid arguments', 2);
  }
  const [group, command = '', name, ...extra] = positionals;
  const help = values.help === true;
  if (help && (group === undefined || group === 'users'))
    return { command: 'help', name, roles: undefined, passwordStdin: false, help };
  if (group !== 'users')
    throw new CliError(group === undefined ? 'missing command' : `unknown command "${group}"`, 2);
  // Not echoed: a stray argument here is most likely a password typed on the command line.
  if (extra.length > 0)
    throw new CliError('too many arguments (passwords are never read from the command line)', 2);
  return { command, name, roles: values.role, passwordStdin: values['password-stdin'] === true, help };
}

function requireOnly(p: Parsed, allowed: { role?: boolean; passwordStdin?: boolean; name: boolean }): string {
  if (p.roles && !allowed.role) throw new CliError(`"users ${p.command}" takes no --role`, 2);
  if (p.passwordStdin && !allowed.passwordStdin)
    throw new CliError(`"users ${p.command}" takes no --password-stdin`, 2);
  if (!allowed.name) {
    if (p.name !== undefined) throw new CliError(`"users ${p.command}" takes no arguments`, 2);
    return '';
  }
  if (p.name === undefined) throw new CliError(`"users ${p.command}" needs a NAME`, 2);
  const problem = validateUsername(p.name);
  if (problem) throw new CliError(`invalid username: ${problem}`);
  return p.name;
}

function parseRoles(values: string[] | undefined): Role[] {
  if (!values) return ['user'];
  const roles: Role[] = [];
  for (const value of values.flatMap((v) => v.split(','))) {
    const role = value.trim();
    if (!isRole(role)) throw new CliError(`unknown role "${role}" (allowed: admin, user)`, 2);
    if (!roles.includes(role)) roles.push(role);
  }
  return roles;
}

async function readNewPassword(io: CliIo, fromStdin: boolean): Promise<string> {
  let password: string;
  if (fromStdin) {
    const line = await readPasswordLine(io.stdin);
    if (line === null) throw new CliError('no password on stdin');
    password = line;
  } else if (io.stdin.isTTY) {
    password = await promptHidden(io.stdin, io.stderr, 'New password: ');
    const problem = validatePassword(password);
    if (problem) throw new CliError(problem);
    const again = await promptHidden(io.stdin, io.stderr, 'Repeat password: ');
    if (again !== password) throw new CliError('the passwords do not match');
  } else {
    throw new CliError('stdin is not a terminal: pass the password on stdin with --password-stdin', 2);
  }
  const problem = validatePassword(password);
  if (problem) throw new CliError(problem);
  return password;
}

async function run(argv: string[], io: CliIo): Promise<void> {
  const p = parse(argv);
  const out = (line: string): boolean => io.stdout.write(line + '\n');
  if (p.command === 'help') {
    io.stdout.write(USAGE);
    return;
  }
  const file = resolveUsersFile(io.env, io.cwd);
  const hasher = new PasswordHasher({ concurrency: 1, maxQueue: 1 });

  switch (p.command) {
    case 'add': {
      const name = requireOnly(p, { name: true, role: true, passwordStdin: true });
      const roles = parseRoles(p.roles);
      // Checked before asking for a password, and again under the lock in case of a race.
      const current = await readUsersFile(file);
      if (current.errors.length > 0) throw new UsersFileParseError(file, current.errors);
      if (current.users.has(name)) throw new CliError(`user "${name}" already exists`);
      const hash = await hasher.hash(await readNewPassword(io, p.passwordStdin));
      await updateUsersFile(file, (users) => {
        if (users.has(name)) throw new CliError(`user "${name}" already exists`);
        users.set(name, { username: name, hash, roles });
      });
      out(`added user "${name}" (${roles.join(',')}) to ${file}`);
      return;
    }
    case 'passwd': {
      const name = requireOnly(p, { name: true, passwordStdin: true });
      const current = await readUsersFile(file);
      if (current.errors.length > 0) throw new UsersFileParseError(file, current.errors);
      if (!current.users.has(name)) throw new CliError(`no user "${name}" in ${file}`);
      const hash = await hasher.hash(await readNewPassword(io, p.passwordStdin));
      await updateUsersFile(file, (users) => {
        const user = users.get(name);
        if (!user) throw new CliError(`no user "${name}" in ${file}`);
        // A new password: no longer the rehash of an older line (see UserRecord.rehashOf).
        users.set(name, { username: name, hash, roles: user.roles });
      });
      out(`changed the password of "${name}"; a running server ends that user's sessions`);
      return;
    }
    case 'remove': {
      const name = requireOnly(p, { name: true });
      const adminsLeft = await updateUsersFile(file, (users) => {
        if (!users.delete(name)) throw new CliError(`no user "${name}" in ${file}`);
        return [...users.values()].filter((u) => u.roles.includes('admin')).length;
      });
      out(`removed user "${name}"; a running server ends that user's sessions`);
      if (adminsLeft === 0) io.stderr.write('warning: no admin user is left\n');
      return;
    }
    case 'list': {
      requireOnly(p, { name: false });
      const current = await readUsersFile(file);
      if (current.errors.length > 0) throw new UsersFileParseError(file, current.errors);
      for (const user of current.users.values()) out(`${user.username}\t${user.roles.join(',')}`);
      return;
    }
    case '':
      throw new CliError('missing subcommand (add, passwd, remove or list)', 2);
    default:
      throw new CliError(`unknown subcommand "${p.command}" (add, passwd, remove or list)`, 2);
  }
}

/** The operations commands, each in a module of its own. */
const OPERATIONS: Record<string, (argv: string[], io: CliIo) => Promise<number>> = {
  backup: backupCommand,
  restore: restoreCommand,
  fsck: fsckCommand,
  migrate: runMigrate,
};

/** Runs the CLI and returns the exit status; errors are reported on stderr as one line. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const name = argv[0];
  const operation = name !== undefined && Object.hasOwn(OPERATIONS, name) ? OPERATIONS[name] : undefined;
  if (operation) return operation(argv.slice(1), io);
  try {
    await run(argv, io);
    return 0;
  } catch (error) {
    if (error instanceof CliError) {
      io.stderr.write(`stowage: ${error.message}\n`);
      if (error.code === 2) io.stderr.write(`run "stowage users --help" for usage\n`);
      return error.code;
    }
    if (error instanceof InputError) {
      io.stderr.write(`stowage: ${error.message}\n`);
      return error.code;
    }
    if (error instanceof UsersFileParseError || error instanceof UsersFileLockError) {
      io.stderr.write(`stowage: ${error.message}\n`);
      return 1;
    }
    const e = error as NodeJS.ErrnoException;
    if (e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'EROFS' || e.code === 'ENOTDIR') {
      io.stderr.write(`stowage: ${e.message}\n`);
      return 1;
    }
    io.stderr.write(`stowage: unexpected error: ${e.message}\n`);
    return 1;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.exitCode = await runCli(process.argv.slice(2), {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
  });
}
