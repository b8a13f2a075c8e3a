import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { required } from '../helpers/requirements.ts';

/** Whether Debian's ffmpeg (ffprobe and ffmpeg) is on PATH; on CI its absence fails the file. */
export function ffmpegAvailable(): boolean {
  const found = ['ffprobe', 'ffmpeg'].every((tool) => spawnSync(tool, ['-version']).status === 0);
  return required(found, 'ffmpeg', 'install the Debian package ffmpeg (.ci/run does)');
}

/** The creation time written into the generated videos (the items' expected takenAt). */
export const CREATED = '2024-05-01T10:22:03.000Z';

/**
 * Real media files made by ffmpeg from its lavfi test sources, each generated on first use into
 * `dir`. Small sizes keep the suite quick on a shared machine; `full-hd.mp4` is the 10 s 1080p
 * H.264 + AAC file of the benchmark.
 */
const RECIPES: Record<string, (out: string, dir: string) => string[][]> = {
  'full-hd.mp4': (out) => [
    [
      ...lavfi('testsrc=size=1920x1080:rate=25:duration=10', 'sine=frequency=440:duration=10'),
      ...h264(),
      ...['-c:a', 'aac', '-b:a', '128k', '-metadata', `creation_time=${CREATED}`, out],
    ],
  ],
  'clip.mp4': (out) => [
    [
      ...lavfi('testsrc=size=320x240:rate=25:duration=3', 'sine=frequency=440:duration=3'),
      ...h264(),
      ...['-c:a', 'aac', '-metadata', `creation_time=${CREATED}`, out],
    ],
  ],
  // Stored 320×240 with a display matrix turning it a quarter: shown 240×320.
  'rotated.mp4': (out, dir) => {
    const plain = path.join(dir, 'rotated-plain.mp4');
    return [
      [...lavfi('testsrc=size=320x240:rate=25:duration=2'), ...h264(), plain],
      ['-i', plain, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', out],
    ];
  },
  // Shorter than the poster's one second: the poster is the first frame.
  'short.mp4': (out) => [[...lavfi('testsrc=size=160x120:rate=25:duration=0.4'), ...h264(), out]],
  'audio.m4a': (out) => [[...lavfi('sine=frequency=440:duration=2'), '-c:a', 'aac', '-b:a', '96k', out]],
  'audio.mp3': (out) => [
    [...lavfi('sine=frequency=440:duration=2'), '-c:a', 'libmp3lame', '-b:a', '128k', out],
  ],
  'clip.webm': (out) => [
    [
      ...lavfi('testsrc=size=320x240:rate=25:duration=1', 'sine=frequency=440:duration=1'),
      ...['-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '200k'],
      ...['-c:a', 'libopus', out],
    ],
  ],
};

function lavfi(...sources: string[]): string[] {
  return sources.flatMap((source) => ['-f', 'lavfi', '-i', source]);
}

function h264(): string[] {
  return ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p'];
}

const run = promisify(execFile);
const made = new Map<string, Promise<string>>();

/** The path of a generated file (see RECIPES), or of `truncated.mp4` / `broken.mp4`. */
export function mediaFile(dir: string, name: string): Promise<string> {
  const key = path.join(dir, name);
  let pending = made.get(key);
  if (!pending) {
    pending = make(dir, name);
    made.set(key, pending);
  }
  return pending;
}

async function make(dir: string, name: string): Promise<string> {
  const out = path.join(dir, name);
  if (name === 'truncated.mp4') {
    // ffmpeg writes the index (moov) after the media data: the first half has no index at all.
    const whole = await fs.readFile(await mediaFile(dir, 'clip.mp4'));
    await fs.writeFile(out, whole.subarray(0, Math.floor(whole.length / 2)));
    return out;
  }
  if (name === 'broken.mp4') {
    // An MP4 signature (so it is typed video/mp4 and stored) over bytes no demuxer can read.
    const ftyp = Buffer.concat([
      Buffer.from([0, 0, 0, 28]),
      Buffer.from('ftypisom'),
      Buffer.from([0, 0, 2, 0]),
      Buffer.from('isomiso2mp41'),
    ]);
    await fs.writeFile(out, Buffer.concat([ftyp, crypto.randomBytes(64 * 1024)]));
    return out;
  }
  const recipe = RECIPES[name];
  if (!recipe) throw new Error(`no recipe for ${name}`);
  for (const args of recipe(out, dir)) {
    await run('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args]);
  }
  return out;
}
