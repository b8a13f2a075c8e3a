import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { databaseContract } from './database.contract.ts';

/** The database contract on SQLite, the single-machine default: one file in a throwaway directory. */
databaseContract('sqlite', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'stowage-sqlite-'));
  return {
    config: { kind: 'sqlite', file: path.join(dir, 'stowage.db') },
    cleanup: () => fs.rm(dir, { recursive: true, force: true }),
  };
});
