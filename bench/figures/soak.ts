import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { BENCH, type Context } from '../lib/context.ts';
import { runOk } from '../lib/proc.ts';
import { MiB } from '../lib/rss.ts';
import { metric, startStowage } from '../lib/servers.ts';

/**
 * The soak: Stowage under a mixed load for MINUTES, its memory sampled every SAMPLE_SECONDS —
 * resident set (from /proc), and the V8 heap and external memory (from its own /metrics) — so a
 * growth outside the JS heap shows as RSS rising while the heap stays flat. It answers one
 * question: does memory level off? The slope of RSS is reported for the two halves after the
 * warm-up; a leak keeps the second half's slope up, a cache that fills flattens it.
 */
const SAMPLE_SECONDS = 15;
const WARMUP_MINUTES = 2;
const WORKERS = 6;

export interface SoakSample {
  minute: number;
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
}

export interface SoakResult {
  minutes: number;
  samples: SoakSample[];
  counts: Record<string, number>;
  /** RSS slope, MiB per minute, over the first and second halves after the warm-up. */
  slopes: [number, number];
  env: Record<string, string>;
}

function rssOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
}

/** Least-squares slope of RSS over time, MiB per minute. */
function slope(samples: SoakSample[]): number {
  if (samples.length < 2) return NaN;
  const n = samples.length;
  const mx = samples.reduce((s, p) => s + p.minute, 0) / n;
  const my = samples.reduce((s, p) => s + p.rssBytes / MiB, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of samples) {
    num += (p.minute - mx) * (p.rssBytes / MiB - my);
    den += (p.minute - mx) ** 2;
  }
  return num / den;
}

/** A few different camera-sized JPEGs (1–3 MP), so renders and decodes vary like real uploads. */
async function writePhotos(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const sizes = [
    [1600, 1200],
    [2048, 1536],
    [1200, 1600],
    [1920, 1080],
  ] as const;
  for (const [i, [width, height]] of sizes.entries()) {
    await sharp({
      create: {
        width,
        height,
        channels: 3,
        background: '#6a8',
        noise: { type: 'gaussian', mean: 128, sigma: 40 },
      },
    })
      .jpeg({ quality: 85 })
      .toFile(path.join(dir, `photo-${i}.jpg`));
  }
}

export async function soak(
  ctx: Context,
  minutes: number,
  env: Record<string, string> = {},
): Promise<SoakResult> {
  const photoDir = path.join(ctx.tmp, 'soak-photos');
  await writePhotos(photoDir);
  const stowage = await startStowage(ctx, path.join(ctx.tmp, `stowage-soak-${Date.now()}`), env);
  const samples: SoakSample[] = [];
  const started = Date.now();
  const sample = async () => {
    const res = await fetch(`${stowage.url}/metrics`);
    const text = await res.text();
    samples.push({
      minute: (Date.now() - started) / 60_000,
      rssBytes: rssOf(stowage.pid),
      heapUsedBytes: metric(text, 'nodejs_heap_size_used_bytes'),
      externalBytes: metric(text, 'nodejs_external_memory_bytes'),
    });
  };
  await sample();
  const timer = setInterval(() => void sample().catch(() => undefined), SAMPLE_SECONDS * 1000);
  let counts: Record<string, number>;
  try {
    const { stdout } = await runOk(
      process.execPath,
      [
        path.join(BENCH, 'lib', 'soak-load.ts'),
        stowage.url,
        ctx.user.name,
        ctx.user.password,
        photoDir,
        String(WORKERS),
        String(Math.round(minutes * 60)),
      ],
      { timeoutMs: (minutes * 60 + 120) * 1000 },
    );
    counts = JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
  } finally {
    clearInterval(timer);
  }
  await sample();
  await stowage.stop();
  const after = samples.filter((s) => s.minute >= WARMUP_MINUTES);
  const middle = WARMUP_MINUTES + (minutes - WARMUP_MINUTES) / 2;
  return {
    minutes,
    samples,
    counts,
    slopes: [slope(after.filter((s) => s.minute <= middle)), slope(after.filter((s) => s.minute >= middle))],
    env,
  };
}

const mib = (bytes: number) => (bytes / MiB).toFixed(1);

/** The soak as Markdown: the verdict, the samples once a minute, the requests by outcome. */
export function soakReport(results: SoakResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const setting = Object.keys(r.env).length
      ? Object.entries(r.env)
          .map(([k, v]) => `\`${k}=${v}\``)
          .join(' ')
      : 'default settings';
    const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
    const failed = Object.entries(r.counts)
      .filter(([k]) => !/ (2\d\d)$/.test(k))
      .map(([k, v]) => `${k}: ${v}`);
    lines.push(
      `#### ${r.minutes} minutes, ${setting}`,
      '',
      `${total.toLocaleString('en')} requests (${WORKERS} clients in a loop); ` +
        `answers other than 2xx: ${failed.length ? failed.join(', ') : 'none'}. ` +
        `RSS slope after the ${WARMUP_MINUTES}-minute warm-up: ` +
        `${r.slopes[0].toFixed(2)} MiB/min in the first half, ${r.slopes[1].toFixed(2)} MiB/min in the second.`,
      '',
      '| minute | RSS MiB | V8 heap used MiB | external MiB |',
      '|---:|---:|---:|---:|',
    );
    let next = 0;
    for (const s of r.samples) {
      if (s.minute + 1e-9 < next && s !== r.samples.at(-1)) continue;
      lines.push(
        `| ${s.minute.toFixed(1)} | ${mib(s.rssBytes)} | ${mib(s.heapUsedBytes)} | ${mib(s.externalBytes)} |`,
      );
      next = Math.floor(s.minute) + 1;
    }
    lines.push('');
  }
  return lines.join('\n');
}
