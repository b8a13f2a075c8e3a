/**
 * `stowage restore DIR`: puts a backup made by `stowage backup` into an empty data directory, with
 * the server stopped. The whole backup is checked against its manifest first (every file's size
 * and sha256); a backup that differs in anything is refused before a byte is written.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Config } from '../config.ts';
import { originalKey } from '../storage/key-layout.ts';
import { LocalBlobStore } from '../storage/local.ts';
import {
  digestFile,
  FORMAT,
  insideBackup,
  MANIFEST,
  VERSION,
  type FileEntry,
  type Manifest,
} from './backup-manifest.ts';
import { assertEmptyOrAbsent, exists, refuseUnsupported } from './backup.ts';
import type { CliIo } from './main.ts';
import { CommandError, loadServerConfig, parseCommand, runCommand } from './ops-command.ts';

export const RESTORE_USAGE = `usage: stowage restore DIR

Restores a backup made by "stowage backup" into the configured data directory, which must be
empty or absent; stop the server first. The backup is verified against its manifest before
anything is written. Run "stowage fsck" afterwards.
`;

export function restoreCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand(io, RESTORE_USAGE, async () => {
    const { values, args } = parseCommand('restore', argv, { help: { type: 'boolean', short: 'h' } });
    if (values.help) {
      io.stdout.write(RESTORE_USAGE);
      return 0;
    }
    if (args.length !== 1) throw new CommandError('restore needs one argument, DIR', 2);
    const config = loadServerConfig(io);
    refuseUnsupported(config, 'restore');
    return restore(path.resolve(io.cwd, args[0]!), config, io);
  });
}

/** What the server's ids look like (src/util/ids.ts), with room for longer ones. */
const ITEM_ID = /^[A-Za-z0-9_-]{1,64}$/;

async function restore(dir: string, config: Config, io: CliIo): Promise<number> {
  if (config.database.kind !== 'sqlite' || config.storage.kind !== 'local') return 2;
  const say = (line: string) => io.stdout.write(`${line}\n`);
  const manifest = await readManifest(dir);

  // 1. The backup is whole and untouched, or nothing happens.
  const entries: FileEntry[] = [manifest.database];
  for (const entry of [manifest.jwtKey, manifest.linkKey, manifest.usersFile]) if (entry) entries.push(entry);
  const problems: string[] = [];
  for (const item of manifest.items) {
    if (
      typeof item.id !== 'string' ||
      !ITEM_ID.test(item.id) ||
      item.key !== originalKey(item.id) ||
      item.path !== `blobs/${item.key}`
    ) {
      problems.push(`bad-entry ${JSON.stringify(item.path)} item=${item.id}`);
    }
  }
  for (const entry of [...entries, ...manifest.items]) {
    const file = insideBackup(dir, entry.path);
    let found;
    try {
      found = await digestFile(file);
    } catch {
      problems.push(`missing ${entry.path}`);
      continue;
    }
    if (found.size !== entry.size)
      problems.push(`size-mismatch ${entry.path} expected=${entry.size} found=${found.size}`);
    else if (found.sha256 !== entry.sha256) problems.push(`sha256-mismatch ${entry.path}`);
  }
  if (problems.length > 0) {
    for (const problem of problems) io.stderr.write(`${problem}\n`);
    throw new CommandError(
      `the backup in ${dir} does not match its manifest (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was restored`,
    );
  }
  say(`backup verified: ${manifest.items.length} items, taken ${manifest.createdAt}`);

  // 2. Only into an empty place: a restore never mixes with, or overwrites, live data.
  await assertEmptyOrAbsent(config.dataDir);
  const targets = [
    config.database.file,
    config.usersFile,
    config.jwtKeyFile,
    config.linkKeyFile,
    config.storage.dir,
  ];
  for (const target of targets) {
    if (await exists(target))
      throw new CommandError(`${target} already exists; restore only into an empty data directory`);
  }

  // 3. Files first and the database last, so that a restore cut short is not a database that
  //    points at files which are not there.
  await fs.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await LocalBlobStore.create(config.storage.dir, undefined, {
    groupReadable: config.storage.groupReadable ?? false,
  });
  try {
    for (const item of manifest.items) {
      const writer = store.createWriter(item.key);
      try {
        await pipeline(
          createReadStream(insideBackup(dir, item.path), { highWaterMark: 1024 * 1024 }),
          writer.stream,
        );
        await writer.commit();
      } catch (error) {
        await writer.abort();
        throw error;
      }
    }
  } finally {
    await store.close();
  }
  if (manifest.jwtKey) await place(dir, manifest.jwtKey, config.jwtKeyFile);
  if (manifest.linkKey) await place(dir, manifest.linkKey, config.linkKeyFile);
  if (manifest.usersFile) await place(dir, manifest.usersFile, config.usersFile);
  await place(dir, manifest.database, config.database.file);
  say(
    `restored into ${config.dataDir}: database, ${manifest.items.length} files` +
      `${manifest.jwtKey || manifest.linkKey ? ', keys' : ''}${manifest.usersFile ? ', users file' : ''}; ` +
      'renditions are made again on demand. Check with "stowage fsck --verify".',
  );
  return 0;
}

async function readManifest(dir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await fs.readFile(path.join(dir, MANIFEST), 'utf8');
  } catch {
    throw new CommandError(`${dir} holds no ${MANIFEST}: not a complete backup`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(text) as Manifest;
  } catch {
    throw new CommandError(`${path.join(dir, MANIFEST)} is not valid JSON; nothing was restored`);
  }
  if (
    manifest?.format !== FORMAT ||
    manifest.version !== VERSION ||
    !Array.isArray(manifest.items) ||
    !manifest.database
  ) {
    throw new CommandError(
      `${path.join(dir, MANIFEST)} is not a stowage backup manifest of version ${VERSION}`,
    );
  }
  return manifest;
}

/** Copies one verified file of the backup to its place, private to the server's user. */
async function place(dir: string, entry: FileEntry, destination: string): Promise<void> {
  await fs.mkdir(path.dirname(destination), { recursive: true, mode: 0o700 });
  await fs.copyFile(insideBackup(dir, entry.path), destination, fs.constants.COPYFILE_EXCL);
  await fs.chmod(destination, 0o600);
}
