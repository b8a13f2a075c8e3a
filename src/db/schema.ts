/** Times are stored as integer milliseconds since the epoch in both dialects. */
export interface SessionsTable {
  id: string;
  username: string;
  created_at: number;
  last_used_at: number;
  expires_at: number;
  revoked_at: number | null;
  user_agent: string | null;
  ip: string | null;
}

export interface RefreshTokensTable {
  token_hash: string;
  session_id: string;
  created_at: number;
  used_at: number | null;
}

export interface MediaTable {
  id: string;
  owner: string;
  filename: string;
  mime_type: string;
  kind: string;
  size: number;
  sha256: string;
  visibility: string;
  tags: string;
  width: number | null;
  height: number | null;
  created_at: number;
  updated_at: number;
  /** When the item was moved to the trash; null while it is not in the trash. */
  deleted_at: number | null;
  /** When the photo or video was taken, ms; null when the file does not say. */
  taken_at: number | null;
  /** ThumbHash, base64. */
  placeholder: string | null;
  /** JSON of the item's `media` (video and audio). */
  media: string | null;
  /** JSON of the item's `exif` (camera data of images). */
  exif: string | null;
  /** Which METADATA_VERSION the four above were read with; 0: not yet (the backfill's to-do list). */
  metadata_version: number;
}

export interface MediaTagsTable {
  media_id: string;
  owner: string;
  tag: string;
}

/** Bytes and files stored per user; the row is also the per-user lock for quota checks. */
export interface UsageTable {
  username: string;
  bytes: number;
  files: number;
}

export interface ReservationsTable {
  id: string;
  username: string;
  bytes: number;
  expires_at: number;
  completing_at: number | null;
}

/**
 * A signed link, so that it can be listed and revoked. The token is not stored: it is an HMAC of
 * the id under the link key (src/media/signing.ts), so a copy of the database alone yields none.
 */
export interface LinksTable {
  id: string;
  media_id: string;
  created_at: number;
  expires_at: number;
}

/** One entry of the audit log: who did what to which thing, from where, and how it ended. */
export interface AuditLogTable {
  id: string;
  at: number;
  actor: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  outcome: string;
}

/** A stored thumbnail or rendition, for the rendition cache's byte budget (src/media/rendition-cache.ts). */
export interface RenditionsTable {
  key: string;
  media_id: string;
  bytes: number;
  last_used_at: number;
}

export interface Database {
  sessions: SessionsTable;
  refresh_tokens: RefreshTokensTable;
  media: MediaTable;
  media_tags: MediaTagsTable;
  usage: UsageTable;
  reservations: ReservationsTable;
  links: LinksTable;
  audit_log: AuditLogTable;
  renditions: RenditionsTable;
}
