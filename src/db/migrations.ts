import { sql, type Kysely } from 'kysely';
import type { Migration, MigrationProvider } from 'kysely/migration';

/**
 * Versioned migrations, written once for both dialects: only portable column types (text, bigint,
 * integer), times as integer milliseconds. Never edit a migration that has shipped; add one.
 */
const migrations: Record<string, Migration> = {
  '0001_sessions': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('sessions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .addColumn('user_agent', 'text')
        .addColumn('ip', 'text')
        .execute();
      await db.schema
        .createIndex('sessions_username')
        .on('sessions')
        .columns(['username', 'expires_at'])
        .execute();
      await db.schema
        .createTable('refresh_tokens')
        .addColumn('token_hash', 'text', (c) => c.primaryKey())
        .addColumn('session_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .execute();
      await db.schema
        .createIndex('refresh_tokens_session')
        .on('refresh_tokens')
        .column('session_id')
        .execute();
    },
  },
  '0002_media': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('media')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('filename', 'text', (c) => c.notNull())
        .addColumn('mime_type', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('visibility', 'text', (c) => c.notNull())
        .addColumn('tags', 'text', (c) => c.notNull())
        .addColumn('width', 'integer')
        .addColumn('height', 'integer')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      // One index per list order, each ending in id so that keyset pagination has a total order.
      for (const [name, cols] of [
        ['media_owner_created', ['owner', 'created_at', 'id']],
        ['media_owner_filename', ['owner', 'filename', 'id']],
        ['media_owner_size', ['owner', 'size', 'id']],
        ['media_owner_kind_created', ['owner', 'kind', 'created_at', 'id']],
        ['media_created', ['created_at', 'id']],
      ] as const) {
        await db.schema
          .createIndex(name)
          .on('media')
          .columns([...cols])
          .execute();
      }
      await db.schema
        .createTable('media_tags')
        .addColumn('media_id', 'text', (c) => c.notNull())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('media_tags_pk', ['media_id', 'tag'])
        .execute();
      await db.schema
        .createIndex('media_tags_owner_tag')
        .on('media_tags')
        .columns(['owner', 'tag'])
        .execute();
      await db.schema
        .createTable('usage')
        .addColumn('username', 'text', (c) => c.primaryKey())
        .addColumn('bytes', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('files', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('reservations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('reservations_expires').on('reservations').column('expires_at').execute();
      await sql`select 1`.execute(db);
    },
  },
  '0003_reservation_claims': {
    async up(db: Kysely<unknown>) {
      // Set while one request stores a finished resumable upload, so no other request (on any
      // instance) stores it a second time.
      await db.schema.alterTable('reservations').addColumn('completing_at', 'bigint').execute();
    },
  },
  '0004_media_sha256_index': {
    async up(db: Kysely<unknown>) {
      // POST /api/media/lookup: a user's items by content hash, newest first within each hash.
      await db.schema
        .createIndex('media_owner_sha256')
        .on('media')
        .columns(['owner', 'sha256', 'created_at', 'id'])
        .execute();
    },
  },
  '0005_links': {
    async up(db: Kysely<unknown>) {
      // Signed links as records, so that each one can be listed and revoked before it expires.
      await db.schema
        .createTable('links')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('media_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('links_media').on('links').columns(['media_id', 'expires_at']).execute();
      await db.schema.createIndex('links_expires').on('links').column('expires_at').execute();
    },
  },
  '0006_media_metadata': {
    async up(db: Kysely<unknown>) {
      // Read from each file's bytes (src/media/media-metadata.ts). Existing rows start at
      // metadata_version 0 and are filled in by the background backfill, one at a time.
      for (const [column, type] of [
        ['taken_at', 'bigint'],
        ['placeholder', 'text'],
        ['media', 'text'],
        ['exif', 'text'],
      ] as const) {
        await db.schema.alterTable('media').addColumn(column, type).execute();
      }
      await db.schema
        .alterTable('media')
        .addColumn('metadata_version', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      // sort=takenAt / -takenAt with keyset pagination.
      await db.schema
        .createIndex('media_owner_taken')
        .on('media')
        .columns(['owner', 'taken_at', 'id'])
        .execute();
      // The backfill walks the rows still to do in id order.
      await db.schema
        .createIndex('media_metadata_version')
        .on('media')
        .columns(['metadata_version', 'id'])
        .execute();
    },
  },
  '0007_renditions': {
    async up(db: Kysely<unknown>) {
      // The rendition cache's index: every stored thumbnail and rendition with its size and when it
      // was last served, so that the cache can be held under its byte budget, least recently used
      // going first. A rendition stored before this migration gets its row when next served.
      await db.schema
        .createTable('renditions')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('media_id', 'text', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('renditions_last_used')
        .on('renditions')
        .columns(['last_used_at', 'key'])
        .execute();
      await db.schema.createIndex('renditions_media').on('renditions').column('media_id').execute();
    },
  },
  '0008_trash': {
    async up(db: Kysely<unknown>) {
      // When the item was moved to the trash (null: it is not in the trash). A trashed item keeps
      // its row, blob and usage until it is restored or purged.
      await db.schema.alterTable('media').addColumn('deleted_at', 'bigint').execute();
      // GET /api/media/trash: a user's trashed items, newest deletion first.
      await db.schema
        .createIndex('media_owner_deleted')
        .on('media')
        .columns(['owner', 'deleted_at', 'id'])
        .execute();
      // The sweeper's purge: items trashed before a cutoff.
      await db.schema.createIndex('media_deleted').on('media').columns(['deleted_at', 'id']).execute();
    },
  },
  '0009_audit_log': {
    async up(db: Kysely<unknown>) {
      // Append-only: rows are inserted, and deleted only by the retention sweep.
      await db.schema
        .createTable('audit_log')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text')
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('ip', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .execute();
      // Newest first with a (at, id) cursor: unfiltered, by user, by action. The first also
      // serves the retention sweep (at < cutoff).
      for (const [name, cols] of [
        ['audit_log_at', ['at', 'id']],
        ['audit_log_actor_at', ['actor', 'at', 'id']],
        ['audit_log_action_at', ['action', 'at', 'id']],
      ] as const) {
        await db.schema
          .createIndex(name)
          .on('audit_log')
          .columns([...cols])
          .execute();
      }
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};
