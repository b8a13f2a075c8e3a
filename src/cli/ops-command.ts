import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, parseEnv } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config.ts';
import type { CliIo } from './main.ts';

/**
 * What the operations commands (backup, restore, fsck) share: the server's own configuration, read
 * the way the server reads it, their argument parsing and how their failures end the process.
 */

/** A failure the operator can act on; `code` is the exit status (2: usage or unsupported setup). */
export class CommandError extends Error {
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.code = code;
  }
}

/** The configuration the server would run with here: the real environment wins over `.env`. */
export function loadServerConfig(io: CliIo): Config {
  const dotenv = path.join(io.cwd, '.env');
  const env = existsSync(dotenv) ? { ...parseEnv(readFileSync(dotenv, 'utf8')), ...io.env } : io.env;
  try {
    return loadConfig(env, io.cwd);
  } catch (error) {
    if (error instanceof ConfigError) {
      throw new CommandError(`invalid configuration:\n  ${error.problems.join('\n  ')}`);
    }
    throw error;
  }
}

type Flags = Record<string, { type: 'boolean' | 'string'; short?: string }>;

/** Strict parsing: an unknown option is a usage error (exit 2). */
export function parseCommand<F extends Flags>(
  command: string,
  argv: string[],
  flags: F,
): { values: Record<keyof F, string | boolean | undefined>; args: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: flags, allowPositionals: true, strict: true });
  } catch (error) {
    throw new CommandError(`${command}: ${(error as Error).message.split('\n')[0]}`, 2);
  }
  return {
    values: parsed.values as unknown as Record<keyof F, string | boolean | undefined>,
    args: parsed.positionals,
  };
}

/** Runs one command and turns its failure into a one-line message and an exit status. */
export async function runCommand(io: CliIo, usage: string, run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof CommandError) {
      io.stderr.write(`stowage: ${error.message}\n`);
      if (error.code === 2) io.stderr.write(usage);
      return error.code;
    }
    io.stderr.write(`stowage: ${(error as Error).message}\n`);
    return 1;
  }
}
