import type { Role } from './user-file.ts';

/** Who is making an authenticated request; set by the authenticate hook. */
export interface Caller {
  username: string;
  roles: Role[];
  sessionId: string;
  isAdmin: boolean;
  /** The client's address as the server sees it (for the audit log), when known. */
  ip?: string;
}
