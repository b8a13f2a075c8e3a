import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import { VideoTools, parseProbe } from '../../src/video/video-tools.ts';
import { errorCode, useScratchDir } from '../images/image-fixtures.ts';
import { CREATED, ffmpegAvailable, mediaFile } from './media-files.ts';

/** ffprobe and ffmpeg as the server runs them, on real files made by ffmpeg itself. */
const run = promisify(execFile);
const scratch = useScratchDir();

function tools(overrides: Partial<ConstructorParameters<typeof VideoTools>[0]> = {}): VideoTools {
  return new VideoTools({
    ffprobe: 'ffprobe',
    ffmpeg: 'ffmpeg',
    tempDir: scratch().path,
    timeoutMs: 60_000,
    concurrency: 2,
    maxQueue: 8,
    ...overrides,
  });
}

/** A stand-in for a tool that answers `-version` and then hangs on every file. */
async function hangingTool(): Promise<string> {
  const script = path.join(scratch().path, 'hanging-ffprobe');
  // exec: the shell becomes the sleeping process, as a hung ffprobe is one process.
  await fs.writeFile(script, '#!/bin/sh\n[ "$1" = "-version" ] && { echo fake; exit 0; }\nexec sleep 600\n', {
    mode: 0o755,
  });
  return script;
}

describe('finding the tools', () => {
  test('is null when either command is missing, so the server runs without them', async () => {
    const options = { tempDir: scratch().path, timeoutMs: 1000, concurrency: 1, maxQueue: 1 };
    expect(
      await VideoTools.find({ ...options, ffprobe: '/nonexistent/ffprobe', ffmpeg: 'ffmpeg' }),
    ).toBeNull();
    expect(
      await VideoTools.find({ ...options, ffprobe: 'ffprobe', ffmpeg: '/nonexistent/ffmpeg' }),
    ).toBeNull();
  });
});

describe.runIf(ffmpegAvailable())('ffprobe and ffmpeg on real files', () => {
  test('reads every field of a 10 s 1080p H.264 + AAC MP4', async () => {
    const file = await mediaFile(scratch().path, 'full-hd.mp4');
    const { media, takenAt } = await tools().probe(file);
    expect(media).toEqual({
      // AAC frames (1024 samples) pad the audio a little past 10 s.
      durationMs: expect.toSatisfy((ms: number) => ms >= 10_000 && ms <= 10_100),
      width: 1920,
      height: 1080,
      videoCodec: 'h264',
      audioCodec: 'aac',
      frameRate: 25,
      bitrate: expect.toSatisfy((bps: number) => Number.isInteger(bps) && bps > 128_000),
    });
    const { size } = await fs.stat(file);
    // The bitrate is the whole file's: its size over its duration.
    expect(media.bitrate! / 8).toBeCloseTo((size * 1000) / media.durationMs!, -4);
    expect(takenAt).toBe(Date.parse(CREATED));
  });

  test('reports the displayed size of a rotated video, and its poster is upright', async () => {
    const file = await mediaFile(scratch().path, 'rotated.mp4');
    const { media, takenAt } = await tools().probe(file);
    expect(media).toMatchObject({ width: 240, height: 320, videoCodec: 'h264', audioCodec: null });
    expect(takenAt).toBeNull();
    const size = await tools().withPoster(file, media.durationMs, async (poster) => sharp(poster).metadata());
    expect({ width: size.width, height: size.height, format: size.format }).toEqual({
      width: 240,
      height: 320,
      format: 'jpeg',
    });
  });

  test('takes the poster about one second in, or the first frame of a shorter video', async () => {
    const clip = await mediaFile(scratch().path, 'clip.mp4');
    const short = await mediaFile(scratch().path, 'short.mp4');
    // testsrc prints the running time: frames one second apart differ, the same frame does not.
    const frame = (file: string) =>
      sharp(file, { failOn: 'none' }).resize(64, 48, { fit: 'fill' }).greyscale().raw().toBuffer();
    const ffmpegFrame = async (file: string, at: number) => {
      const out = path.join(scratch().path, `frame-${path.basename(file)}-${at}.jpg`);
      await run('ffmpeg', [
        '-v',
        'error',
        '-y',
        '-ss',
        String(at),
        '-i',
        file,
        '-frames:v',
        '1',
        '-q:v',
        '2',
        out,
      ]);
      return frame(out);
    };
    const distance = (a: Buffer, b: Buffer) =>
      a.reduce((sum, v, i) => sum + Math.abs(v - b[i]!), 0) / a.length;
    const clipPoster = await tools().withPoster(clip, 3000, (poster) => frame(poster));
    expect(distance(clipPoster, await ffmpegFrame(clip, 1))).toBeLessThan(2);
    expect(distance(clipPoster, await ffmpegFrame(clip, 0))).toBeGreaterThan(2);
    const shortPoster = await tools().withPoster(short, 400, (poster) => frame(poster));
    expect(distance(shortPoster, await ffmpegFrame(short, 0))).toBeLessThan(2);
  });

  test('reads audio-only files: no picture, so width, height, frame rate and video codec are null', async () => {
    for (const [name, codec] of [
      ['audio.m4a', 'aac'],
      ['audio.mp3', 'mp3'],
    ] as const) {
      const { media } = await tools().probe(await mediaFile(scratch().path, name));
      expect(media, name).toEqual({
        durationMs: expect.toSatisfy((ms: number) => ms >= 1_950 && ms <= 2_100),
        width: null,
        height: null,
        videoCodec: null,
        audioCodec: codec,
        frameRate: null,
        bitrate: expect.toSatisfy((bps: number) => bps > 30_000 && bps < 300_000),
      });
    }
  });

  test('reads WebM with VP9 and Opus', async () => {
    const { media } = await tools().probe(await mediaFile(scratch().path, 'clip.webm'));
    expect(media).toMatchObject({
      width: 320,
      height: 240,
      videoCodec: 'vp9',
      audioCodec: 'opus',
      frameRate: 25,
    });
    expect(media.durationMs).toBeGreaterThanOrEqual(1000);
    expect(media.durationMs).toBeLessThanOrEqual(1100);
  });

  test('a truncated MP4 and a file no demuxer reads are INVALID_FILE, for probe and poster alike', async () => {
    for (const name of ['truncated.mp4', 'broken.mp4']) {
      const file = await mediaFile(scratch().path, name);
      expect(await errorCode(tools().probe(file)), name).toBe('INVALID_FILE');
      expect(await errorCode(tools().withPoster(file, null, () => Promise.resolve())), name).toBe(
        'INVALID_FILE',
      );
    }
  });

  test('a tool that hangs is killed at the time limit: INVALID_FILE, no hung call', async () => {
    const hanging = tools({ ffprobe: await hangingTool(), timeoutMs: 500 });
    expect(await errorCode(hanging.probe(await mediaFile(scratch().path, 'clip.mp4')))).toBe('INVALID_FILE');
  });

  test('runs at most `concurrency` tools and refuses past its queue with UNAVAILABLE', async () => {
    const hanging = tools({ ffprobe: await hangingTool(), timeoutMs: 2_000, concurrency: 1, maxQueue: 1 });
    const file = await mediaFile(scratch().path, 'clip.mp4');
    const running = [hanging.probe(file), hanging.probe(file)].map((p) => errorCode(p));
    expect(await errorCode(hanging.probe(file))).toBe('UNAVAILABLE');
    expect(await Promise.all(running)).toEqual(['INVALID_FILE', 'INVALID_FILE']);
  });

  test('a playlist naming another file on the server is refused, not followed', async () => {
    const dir = scratch().path;
    const secret = await mediaFile(dir, 'rotated.mp4');
    // HLS: ffmpeg would open the file it names and show its picture as this upload's.
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:${secret}\n#EXT-X-ENDLIST\n`;
    const upload = path.join(dir, 'playlist.mp4');
    await fs.writeFile(upload, playlist);
    expect(await errorCode(tools().probe(upload))).toBe('INVALID_FILE');
    expect(await errorCode(tools().withPoster(upload, null, () => Promise.resolve()))).toBe('INVALID_FILE');
    // The same playlist is read by an unrestricted ffprobe: the refusal is ours.
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_format', `file:${upload}`]);
    expect(stdout).toContain('format_name=hls');
  });

  test('never reads a path as a protocol or an option', async () => {
    const dir = scratch().path;
    await fs.copyFile(await mediaFile(dir, 'clip.mp4'), path.join(dir, '-i'));
    const odd = path.relative(process.cwd(), path.join(dir, '-i'));
    expect((await tools().probe(odd)).media.videoCodec).toBe('h264');
  });
});

describe('parsing ffprobe output', () => {
  test('skips cover art in audio files and treats 0/0 frame rates and epoch dates as unknown', () => {
    const parsed = parseProbe({
      streams: [
        {
          codec_type: 'video',
          codec_name: 'mjpeg',
          width: 500,
          height: 500,
          disposition: { attached_pic: 1 },
        },
        { codec_type: 'audio', codec_name: 'mp3', tags: { creation_time: '1970-01-01T00:00:00.000000Z' } },
      ],
      format: { duration: '2.5', bit_rate: '128000' },
    });
    expect(parsed).toEqual({
      media: {
        durationMs: 2500,
        width: null,
        height: null,
        videoCodec: null,
        audioCodec: 'mp3',
        frameRate: null,
        bitrate: 128000,
      },
      takenAt: null,
    });
  });

  test('swaps width and height for a quarter turn either way, from side data or the rotate tag', () => {
    const stream = {
      codec_type: 'video',
      codec_name: 'h264',
      width: 1920,
      height: 1080,
      avg_frame_rate: '30000/1001',
    };
    for (const extra of [
      { side_data_list: [{ rotation: -90 }] },
      { side_data_list: [{ rotation: 270 }] },
      { tags: { rotate: '90' } },
    ]) {
      const { media } = parseProbe({ streams: [{ ...stream, ...extra }], format: {} });
      expect(media, JSON.stringify(extra)).toMatchObject({ width: 1080, height: 1920, frameRate: 29.97 });
    }
    const upsideDown = parseProbe({
      streams: [{ ...stream, side_data_list: [{ rotation: 180 }] }],
      format: {},
    });
    expect(upsideDown.media).toMatchObject({ width: 1920, height: 1080 });
  });

  test('a file with neither audio nor video is unreadable', () => {
    expect(() => parseProbe({ streams: [{ codec_type: 'data' }], format: {} })).toThrow(/damaged/);
  });
});
