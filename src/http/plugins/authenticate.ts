import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccessTokens } from '../../auth/tokens.ts';
import { unauthenticated } from '../../auth/tokens.ts';
import type { SessionService } from '../../auth/sessions.ts';
import type { UsersStore } from '../../auth/users-store.ts';
import { AppError } from '../../errors.ts';
import type { Caller } from '../../auth/caller.ts';
import '../caller.ts';

const BEARER_RE = /^Bearer +([^\s]+) *$/i;

export interface AuthDeps {
  tokens: AccessTokens;
  sessions: SessionService;
  users: UsersStore;
}

/**
 * Finds the caller from the Bearer token: a valid signature is not enough, the session behind it
 * must be live and the user must still be in the users file.
 */
export async function identify(deps: AuthDeps, header: string | undefined): Promise<Caller> {
  if (header === undefined || header === '') throw unauthenticated();
  const match = BEARER_RE.exec(header);
  if (!match?.[1]) throw unauthenticated('malformed Authorization header; expected "Bearer <token>"');
  const claims = await deps.tokens.verify(match[1]);
  const session = await deps.sessions.getLive(claims.sessionId);
  if (!session || session.username !== claims.username) throw unauthenticated('the session has ended');
  const user = deps.users.get(claims.username);
  if (!user) throw unauthenticated('the session has ended');
  return {
    username: user.username,
    roles: user.roles,
    sessionId: session.id,
    isAdmin: user.roles.includes('admin'),
  };
}

export function authenticateHook(deps: AuthDeps) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    request.caller = { ...(await identify(deps, request.headers.authorization)), ip: request.ip };
  };
}

/** The authenticated caller of a route behind authenticateHook. */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new AppError('UNAUTHENTICATED');
  return request.caller;
}
