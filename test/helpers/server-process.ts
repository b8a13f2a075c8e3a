import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const MAIN = path.join(import.meta.dirname, '..', '..', 'src', 'main.ts');

export interface ServerProcess {
  child: ChildProcess;
  /** http://127.0.0.1:PORT, read from the server's own "listening" log line. */
  base: string;
  port: number;
  /** The last part of what the process wrote (stdout and stderr), for failure messages. */
  output(): string;
  /** Sends `signal` (if it still runs) and waits for the exit. */
  kill(signal: NodeJS.Signals): Promise<void>;
}

/**
 * The real server process (src/main.ts) listening on a free port of 127.0.0.1, with only the
 * given STOWAGE_ variables (none inherited from the developer's environment).
 */
export async function startServerProcess(options: {
  cwd: string;
  env: Record<string, string>;
  name?: string;
  timeoutMs?: number;
}): Promise<ServerProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('STOWAGE_')),
  );
  const child = spawn(process.execPath, [MAIN], {
    cwd: options.cwd,
    env: {
      ...inherited,
      STOWAGE_HOST: '127.0.0.1',
      STOWAGE_PORT: '0',
      STOWAGE_LOG_LEVEL: 'info',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const name = options.name ?? 'server';
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start:\n${output}`)),
      options.timeoutMs ?? 30_000,
    );
    const onData = (data: Buffer) => {
      output = (output + data.toString()).slice(-16_000);
      const found = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (found?.[1]) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${child.exitCode}:\n${output}`));
    });
  });
  return {
    child,
    base,
    port: Number(new URL(base).port),
    output: () => output,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
