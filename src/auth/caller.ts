import type { Role } from './user-file.ts';

/** Who is making an authenticated request; set by the authenticate hook. */
export interface Caller {
  username: string;
  roles: Role[];
  sessionId: string;
  isAdmin: boolean;
}
