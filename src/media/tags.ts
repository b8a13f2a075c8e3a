import { validationFailed, type ValidationIssue } from '../errors.ts';

export const MAX_TAGS = 32;
export const MAX_TAG_LENGTH = 64;

/** Tags are trimmed, lower-cased, de-duplicated and bounded, so filters match what users meant. */
export function normalizeTags(raw: readonly string[], field = 'tags'): string[] {
  const tags = [...new Set(raw.map((t) => t.normalize('NFC').trim().toLowerCase()).filter(Boolean))];
  const problems: ValidationIssue[] = [];
  if (tags.length > MAX_TAGS) problems.push({ path: field, message: `at most ${MAX_TAGS} tags` });
  for (const tag of tags) {
    // eslint-disable-next-line no-control-regex -- matching control characters is the point
    if (Array.from(tag).length > MAX_TAG_LENGTH || /[\u0000-\u001f\u007f,]/.test(tag)) {
      problems.push({
        path: field,
        message: `tag ${JSON.stringify(tag.slice(0, 80))} is too long or has a forbidden character`,
      });
    }
  }
  if (problems.length > 0) throw validationFailed(problems);
  return tags.sort();
}

export function parseTagList(csv: string): string[] {
  return normalizeTags(csv.split(','));
}
