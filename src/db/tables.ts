import type { Database } from './schema.ts';

/**
 * Every table of the schema, each after the tables it refers to (refresh_tokens → sessions;
 * media_tags, links → media), in the one place that lists them: `stowage migrate` copies exactly
 * these. A table added to `Database` must be added here too; the type check fails until it is.
 */
export const TABLES = [
  'sessions',
  'refresh_tokens',
  'media',
  'media_tags',
  'links',
  'usage',
  'reservations',
  'audit_log',
  'renditions',
] as const satisfies readonly (keyof Database)[];

type Unlisted = Exclude<keyof Database, (typeof TABLES)[number]>;

/** Compiles only while no table of `Database` is missing from TABLES (the error names it). */
export const EVERY_TABLE_LISTED: [Unlisted] extends [never] ? true : Unlisted = true;
