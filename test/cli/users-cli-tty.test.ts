/**
 * The interactive prompt, driven through a real pseudo-terminal (util-linux `script`), so echo
 * behaviour is the terminal's own and not simulated.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PasswordHasher } from '../../src/auth/passwords.ts';
import { CLI, cleanEnv, readUsers, tempProject } from './cli-helpers.ts';
import { required } from '../helpers/requirements.ts';

const scriptAvailable = required(
  spawnSync('script', ['--version']).status === 0,
  'script (a terminal for the test)',
  'apt-get install bsdutils',
);

interface Answer {
  after: string;
  send: string;
}

/** Runs the CLI on a pty; each answer is typed once its prompt text has appeared. */
function runOnTerminal(
  args: string[],
  cwd: string,
  answers: Answer[],
): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd, env: cleanEnv() });
    let screen = '';
    let next = 0;
    child.stdout.on('data', (d: Buffer) => {
      screen += d.toString();
      const answer = answers[next];
      if (answer && screen.split(answer.after).length - 1 > countBefore(next)) {
        next++;
        child.stdin.write(answer.send);
      }
    });
    // The n-th answer waits for its prompt text to appear once more than it did for earlier answers.
    const countBefore = (n: number): number =>
      answers.slice(0, n).filter((a) => a.after === answers[n]!.after).length;
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, screen }));
  });
}

describe.skipIf(!scriptAvailable)('stowage users on a terminal', () => {
  it('asks twice without echoing the password', async () => {
    const { cwd, usersFile } = tempProject();
    const result = await runOnTerminal(['users', 'add', 'alice', '--role', 'admin'], cwd, [
      { after: 'New password:', send: 'tty-secret-1\r' },
      { after: 'Repeat password:', send: 'tty-secret-1\r' },
    ]);
    expect(result.code).toBe(0);
    expect(result.screen).toContain('Repeat password:');
    expect(result.screen).not.toContain('tty-secret');
    const alice = readUsers(usersFile).get('alice')!;
    expect(alice.roles).toEqual(['admin']);
    expect(await new PasswordHasher().verify(alice.hash, 'tty-secret-1')).toBe(true);
  });

  it('refuses when the two entries differ, writing nothing', async () => {
    const { cwd, usersFile } = tempProject();
    const result = await runOnTerminal(['users', 'add', 'alice'], cwd, [
      { after: 'New password:', send: 'tty-secret-1\r' },
      { after: 'Repeat password:', send: 'tty-secret-2\r' },
    ]);
    expect(result.code).toBe(1);
    expect(result.screen).toMatch(/do not match/);
    expect(result.screen).not.toContain('tty-secret');
    expect(existsSync(usersFile)).toBe(false);
  });

  it('Ctrl-C at the prompt cancels with status 130', async () => {
    const { cwd, usersFile } = tempProject();
    const result = await runOnTerminal(['users', 'add', 'alice'], cwd, [
      { after: 'New password:', send: 'abc\u0003' },
    ]);
    expect(result.code).toBe(130);
    expect(existsSync(usersFile)).toBe(false);
  });
});
