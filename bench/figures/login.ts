import path from 'node:path';
import { BENCH, type Context } from '../lib/context.ts';
import { expectClean, load, loginScript, type LoadResult } from '../lib/load.ts';
import { runOk, sleep } from '../lib/proc.ts';
import { startStowage, type Stowage } from '../lib/servers.ts';
import { alternate, type Figure, type Measure } from '../lib/stats.ts';

/**
 * Figure 8: is the server still responsive while 100 clients hammer login with wrong passwords?
 * Argon2id runs in the libuv pool (bounded to two at a time, 64 queued, 429 past that), so the
 * event loop should stay free. /healthz is probed by one sequential connection, alone (B) and
 * during the storm (A); the storm starts a second before the probe and ends after it.
 */

const STORM_CONNECTIONS = 100;

async function probe(ctx: Context, stowage: Stowage, seconds: number): Promise<LoadResult> {
  const url = `${stowage.url}/healthz`;
  return expectClean(await load({ url, connections: 1, seconds, tmp: ctx.tmp }), 'healthz probe');
}

async function underStorm(ctx: Context, stowage: Stowage, seconds: number) {
  const storm = load({
    url: `${stowage.url}/api/auth/login`,
    connections: STORM_CONNECTIONS,
    seconds: seconds + 2,
    lua: loginScript(),
    tmp: ctx.tmp,
  });
  await sleep(1000);
  const health = await probe(ctx, stowage, seconds);
  const logins = await storm;
  if (logins.statuses['200'] !== undefined || logins.requests === 0)
    throw new Error('the login storm did not fail');
  return { health, logins };
}

async function hasherAlone(seconds: number): Promise<number> {
  const script = path.join(BENCH, 'baselines', 'password-hasher.ts');
  const out = await runOk(process.execPath, [script, String(seconds)]);
  return (JSON.parse(out.stdout) as { perSecond: number }).perSecond;
}

export async function loginFigures(ctx: Context): Promise<Figure[]> {
  const { rounds, loadSeconds } = ctx.settings;
  const stowage = await startStowage(ctx, path.join(ctx.tmp, 'stowage-login'));
  await probe(ctx, stowage, 1);

  const a: Measure = { label: `during ${STORM_CONNECTIONS}-client login storm`, unit: 'ms', values: [] };
  const b: Measure = { label: 'idle server', unit: 'ms', values: [] };
  const verified: Measure = { label: 'Stowage, failed logins (401)', unit: '/s', values: [] };
  const hasher: Measure = { label: 'PasswordHasher alone', unit: '/s', values: [] };
  for (let r = 0; r < rounds; r++) {
    const [storm, idle] = await alternate(
      r,
      () => underStorm(ctx, stowage, loadSeconds),
      () => probe(ctx, stowage, loadSeconds),
    );
    const per = storm.logins.statuses;
    a.values.push(storm.health.p99Ms);
    b.values.push(idle.p99Ms);
    verified.values.push((per['401'] ?? 0) / storm.logins.seconds);
    hasher.values.push(await hasherAlone(loadSeconds));
    ctx.log(
      `[8] round ${r + 1}/${rounds}: /healthz p99 ${storm.health.p99Ms.toFixed(1)} ms under storm ` +
        `(idle ${idle.p99Ms.toFixed(1)} ms); login answers ${JSON.stringify(per)} in ${storm.logins.seconds.toFixed(1)} s`,
    );
  }
  await stowage.stop();
  return [
    {
      id: '8',
      title: `/healthz p99 while ${STORM_CONNECTIONS} clients hammer login with wrong passwords`,
      how:
        `A: p99 latency of /healthz (wrk -c1, ${loadSeconds} s) while a second wrk keeps ${STORM_CONNECTIONS} ` +
        `connections posting wrong passwords for random usernames (each costs an argon2id verification until ` +
        `the hashing queue is full, then 429). B: the same probe on the same server with no storm (context). ` +
        `Target on A itself.`,
      a,
      b,
      target: { on: 'a', op: '<=', value: 50 },
    },
    {
      id: '8b',
      title: 'password verifications per second during the storm vs the hasher alone',
      how:
        'A: 401 answers per second during the storm (each one a full argon2id verification). B: ' +
        'bench/baselines/password-hasher.ts: src/auth/passwords.ts PasswordHasher with the same parameters and ' +
        'concurrency, verifying in a loop, no server. Context: how much of the hasher capacity the server keeps during the storm.',
      a: verified,
      b: hasher,
    },
  ];
}
