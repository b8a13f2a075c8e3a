import { Linter } from 'eslint';
import { describe, expect, it } from 'vitest';
import { layers } from '../../eslint.config.js';

/**
 * The import-direction rule of eslint.config.js (docs/architecture.md, "Layers"): a folder of src/
 * may import from the layers below it, never from one above, and nothing in a folder imports the
 * top-level wiring. Checked on code the rule is given, so a broken pattern cannot pass silently.
 */
const linter = new Linter({ configType: 'flat' });

function problems(file: string, from: string): string[] {
  const code = `import { x } from '${from}';\nexport const y = x;\n`;
  return linter
    .verify(code, [{ languageOptions: { sourceType: 'module' } }, ...layers], { filename: file })
    .map((m) => `${m.ruleId ?? ''}: ${m.message}`);
}

describe('the direction of imports between the folders of src/', () => {
  it.each([
    ['src/storage/s3.ts', '../http/offload.ts'],
    ['src/storage/local.ts', '../uploads/ingest.ts'],
    ['src/media/media-service.ts', '../http/caller.ts'],
    ['src/media/sweeper.ts', '../uploads/tus/tus-uploads.ts'],
    ['src/util/clock.ts', '../storage/blob-store.ts'],
    ['src/video/video-tools.ts', '../media/media-repo.ts'],
    ['src/images/image-processor.ts', '../video/video-tools.ts'],
    ['src/db/database.ts', '../auth/sessions.ts'],
    ['src/uploads/ingest.ts', '../http/schemas.ts'],
    ['src/uploads/tus/tus-uploads.ts', '../../http/caller.ts'],
    ['src/auth/sessions.ts', '../services.ts'],
    ['src/http/routes/media.ts', '../../app.ts'],
    ['src/audit/audit-log.ts', '../media/media-repo.ts'],
    ['src/audit/audit-log.ts', '../auth/sessions.ts'],
    ['src/db/database.ts', '../audit/audit-log.ts'],
  ])('%s may not import %s', (file, from) => {
    expect(problems(file, from)).toEqual([expect.stringMatching(/^no-restricted-imports: .*layer above/)]);
  });

  it.each([
    ['src/http/routes/media.ts', '../../uploads/ingest.ts'],
    ['src/http/serve-blob.ts', '../storage/blob-store.ts'],
    ['src/uploads/ingest.ts', '../media/media-repo.ts'],
    ['src/media/media-repo.ts', '../audit/audit-log.ts'],
    ['src/auth/sessions.ts', '../audit/audit-log.ts'],
    ['src/audit/audit-log.ts', '../db/database.ts'],
    ['src/uploads/tus/tus-uploads.ts', '../../storage/key-layout.ts'],
    ['src/media/sweeper.ts', '../storage/key-layout.ts'],
    ['src/media/thumbnails.ts', '../video/video-tools.ts'],
    ['src/storage/local.ts', '../util/clock.ts'],
    ['src/auth/sessions.ts', '../errors.ts'],
  ])('%s may import %s', (file, from) => {
    expect(problems(file, from)).toEqual([]);
  });
});
