import { describe, expect, it } from 'vitest';
import { ConfigError, loadMigrateConfig } from '../../src/config.ts';

/** The problems loadMigrateConfig reports, or [] when it accepts the environment. */
function problems(env: Record<string, string>, wantS3: boolean): string[] {
  try {
    loadMigrateConfig(env, wantS3);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

describe('stowage migrate settings', () => {
  it('reads the target bucket from STOWAGE_S3_* whatever STOWAGE_STORAGE says', () => {
    const config = loadMigrateConfig(
      {
        STOWAGE_STORAGE: 'local',
        STOWAGE_S3_BUCKET: 'media',
        STOWAGE_S3_ENDPOINT: 'http://127.0.0.1:9000',
        STOWAGE_S3_FORCE_PATH_STYLE: 'true',
      },
      true,
    );
    expect(config.s3).toMatchObject({
      kind: 's3',
      bucket: 'media',
      endpoint: 'http://127.0.0.1:9000',
      region: 'us-east-1',
      forcePathStyle: true,
    });
    expect(config.testPause).toBeUndefined();
  });

  it('needs a bucket only for --to-storage s3', () => {
    expect(problems({}, false)).toEqual([]);
    expect(problems({}, true)).toEqual(['STOWAGE_S3_BUCKET: required for migrate --to-storage s3']);
    expect(problems({ STOWAGE_S3_BUCKET: 'b', STOWAGE_S3_ENDPOINT: 'not a url' }, true)).toEqual([
      'STOWAGE_S3_ENDPOINT: not a URL: "not a url"',
    ]);
  });

  it('takes the test pause as rows:N or files:N, and nothing else', () => {
    expect(loadMigrateConfig({ STOWAGE_MIGRATE_TEST_PAUSE: 'files:5' }, false).testPause).toEqual({
      stage: 'files',
      after: 5,
    });
    expect(loadMigrateConfig({ STOWAGE_MIGRATE_TEST_PAUSE: 'rows:12' }, false).testPause).toEqual({
      stage: 'rows',
      after: 12,
    });
    for (const value of ['files', 'files:0', 'bytes:3', 'rows:-1', 'rows:1x'])
      expect(problems({ STOWAGE_MIGRATE_TEST_PAUSE: value }, false)[0]).toMatch(
        /^STOWAGE_MIGRATE_TEST_PAUSE: must be rows:N or files:N/,
      );
  });
});
