import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { required } from './requirements.ts';

/**
 * A real clamd for tests: a private daemon with a one-line signature database, so it starts in a
 * second or two and never needs freshclam (no network).
 */

/** The EICAR anti-virus test string, assembled so this file is not itself flagged by scanners. */
export const EICAR = ['X5O!P%@AP[4\\PZX54(P^)7CC)7}$', 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'].join('');

/** clamd reports signatures from a non-official database with the `.UNOFFICIAL` suffix. */
export const EICAR_SIGNATURE = 'Stowage.Test.EICAR.UNOFFICIAL';

/** `Name:TargetType:Offset:HexSignature`: target 0 (any file), matched at any offset. */
const SIGNATURES = `Stowage.Test.EICAR:0:*:${Buffer.from(EICAR, 'latin1').toString('hex')}\n`;

const CANDIDATES = ['/usr/sbin/clamd', '/usr/local/sbin/clamd', '/opt/homebrew/sbin/clamd'];
const START_TIMEOUT_MS = 30_000;

export interface ClamdOptions {
  /** clamd's StreamMaxLength in bytes: a stream past it gets "INSTREAM size limit exceeded". */
  streamMaxLength?: number;
}

export interface RunningClamd {
  /** `tcp://127.0.0.1:PORT` */
  url: string;
  socketPath: string;
  /** `unix:` URL of socketPath. */
  unixUrl: string;
  stop(): Promise<void>;
}

export function clamdBinary(): string | undefined {
  const onPath = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'clamd'));
  return [...CANDIDATES, ...onPath].find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Whether clamd is installed; says once why clamd tests are skipped when it is not. */
export function clamdAvailable(): boolean {
  return required(clamdBinary() !== undefined, 'clamd', 'apt-get install clamav-daemon (.ci/run does)');
}

export async function startClamd(options: ClamdOptions = {}): Promise<RunningClamd> {
  const binary = clamdBinary();
  if (binary === undefined) throw new Error('clamd is not installed (apt-get install clamav-daemon)');
  const dir = await mkdtemp(join(tmpdir(), 'stowage-clamd-'));
  try {
    await writeFile(join(dir, 'stowage.ndb'), SIGNATURES);
    // The free port is found before clamd binds it; another process may win that race, so retry.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const socketPath = join(dir, 'clamd.sock');
      await writeFile(join(dir, 'clamd.conf'), config(dir, socketPath, port, options));
      const child = spawn(binary, ['--config-file', join(dir, 'clamd.conf')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      try {
        await waitUntilReady(child, port);
      } catch (error) {
        await kill(child);
        if (attempt < 3 && /Cannot bind/.test(String(error))) continue;
        throw error;
      }
      return {
        url: `tcp://127.0.0.1:${port}`,
        socketPath,
        unixUrl: `unix:${socketPath}`,
        stop: async () => {
          await kill(child);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

function config(dir: string, socketPath: string, port: number, options: ClamdOptions): string {
  // Size limits follow StreamMaxLength: files above MaxFileSize would otherwise pass unscanned.
  const limit = options.streamMaxLength ?? 64 * 1024 * 1024;
  return [
    'Foreground yes',
    `DatabaseDirectory ${dir}`,
    `TemporaryDirectory ${dir}`,
    `LocalSocket ${socketPath}`,
    'TCPAddr 127.0.0.1',
    `TCPSocket ${port}`,
    `StreamMaxLength ${limit}`,
    `MaxFileSize ${limit}`,
    `MaxScanSize ${limit}`,
    'SelfCheck 0',
    '',
  ].join('\n');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

async function waitUntilReady(child: ChildProcess, port: number): Promise<void> {
  // Reading clamd's log keeps its pipes drained (a full pipe would block it); the tail explains
  // a failed start.
  let output = '';
  const collect = (data: Buffer): void => {
    output = (output + data.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) throw new Error(`clamd exited during startup:\n${output}`);
    if (await answersPing(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`clamd did not answer PING within ${START_TIMEOUT_MS} ms:\n${output}`);
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('data', (data: Buffer) => {
      reply += data.toString();
      if (reply.includes('\0')) done(reply === 'PONG\0');
    });
    socket.on('end', () => done(false));
    socket.write('zPING\0');
  });
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
