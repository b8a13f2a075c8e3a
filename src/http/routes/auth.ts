import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { PasswordHasher } from '../../auth/passwords.ts';
import type { LoginThrottle } from '../../auth/login-throttle.ts';
import type { Session, SessionService } from '../../auth/sessions.ts';
import type { AccessTokens } from '../../auth/tokens.ts';
import { unauthenticated } from '../../auth/tokens.ts';
import type { UsersStore } from '../../auth/users-store.ts';
import { AppError } from '../../errors.ts';
import type { Metrics } from '../../metrics.ts';
import type { AuditLog } from '../../audit/audit-log.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { IsoTime, errors, iso } from '../schemas.ts';

export interface AuthRouteDeps {
  users: UsersStore;
  hasher: PasswordHasher;
  tokens: AccessTokens;
  sessions: SessionService;
  throttle: LoginThrottle;
  metrics: Metrics;
  audit?: AuditLog;
}

const TokenResponse = Type.Object({
  accessToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer(),
  refreshToken: Type.String(),
  user: Type.Object({ username: Type.String(), roles: Type.Array(Type.String()) }),
});

const SessionItem = Type.Object({
  id: Type.String(),
  createdAt: IsoTime,
  lastUsedAt: IsoTime,
  expiresAt: IsoTime,
  userAgent: Type.Union([Type.String(), Type.Null()]),
  ip: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean(),
});

const tags = ['auth'];
const secured = [{ bearer: [] }];

/** Public auth routes: login and refresh. */
export async function publicAuthRoutes(base: FastifyInstance, deps: AuthRouteDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  const tokenResponse = async (session: Session, refreshToken: string) => {
    const user = deps.users.get(session.username);
    if (!user) throw unauthenticated('invalid refresh token');
    return {
      accessToken: await deps.tokens.issue(user.username, session.id),
      tokenType: 'Bearer' as const,
      expiresIn: deps.tokens.ttlSeconds,
      refreshToken,
      user: { username: user.username, roles: user.roles },
    };
  };

  app.post(
    '/api/auth/login',
    {
      schema: {
        tags,
        summary: 'Log in with a username and password',
        body: Type.Object(
          {
            username: Type.String({ minLength: 1, maxLength: 128 }),
            password: Type.String({ minLength: 1, maxLength: 1024 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: TokenResponse, ...errors(400, 401, 429) },
      },
    },
    async (request) => {
      const { username, password } = request.body;
      try {
        await deps.throttle.check(username, request.ip);
      } catch (error) {
        deps.metrics.logins.inc({ outcome: 'throttled' });
        throw error;
      }
      const user = deps.users.get(username);
      let ok: boolean;
      try {
        // Unknown users cost one full hash verification too, and every line, whatever its hash,
        // costs at least that much when the password is wrong (PasswordHasher.verify), so timing
        // tells neither who exists nor what their line holds.
        ok = user ? await deps.hasher.verify(user.hash, password) : await deps.hasher.verifyDummy(password);
      } catch (error) {
        // No verdict (the hasher is too busy): the attempt was no failed login, so it must not
        // count towards locking the user out (contract: busy never counts as a failure).
        await deps.throttle.giveBack(username, request.ip).catch((giveBackError: unknown) => {
          request.log.warn({ err: giveBackError }, 'login throttle: could not give a busy attempt back');
        });
        deps.metrics.logins.inc({ outcome: 'busy' });
        throw error;
      }
      if (!user || !ok) {
        deps.metrics.logins.inc({ outcome: 'failure' });
        request.log.info({ username: username.slice(0, 64) }, 'login failed');
        // Not awaited: the answer to a failed login must not wait for (or fail with) the database,
        // so that it keeps the equal-time rule and stays a 401 (AuditLog.record logs a failure).
        void deps.audit?.record({
          actor: username,
          action: 'login_failed',
          target: username,
          ip: request.ip,
          outcome: 'INVALID_CREDENTIALS',
        });
        throw new AppError('INVALID_CREDENTIALS');
      }
      // A bcrypt (or weaker argon2id) line becomes argon2id with today's parameters, in the
      // background: the password is in hand only now.
      if (deps.hasher.needsRehash(user.hash)) {
        void deps.users.upgradeHash(user.username, user.hash, () => deps.hasher.hash(password));
      }
      await deps.throttle.recordSuccess(username, request.ip);
      const { session, refreshToken } = await deps.sessions.create(
        user.username,
        request.headers['user-agent'] ?? null,
        request.ip,
      );
      deps.metrics.logins.inc({ outcome: 'success' });
      await deps.audit?.record({
        actor: user.username,
        action: 'login',
        target: user.username,
        ip: request.ip,
        outcome: 'ok',
      });
      return tokenResponse(session, refreshToken);
    },
  );

  app.post(
    '/api/auth/refresh',
    {
      schema: {
        tags,
        summary: 'Exchange a refresh token for new tokens (the old refresh token stops working)',
        body: Type.Object(
          { refreshToken: Type.String({ minLength: 1, maxLength: 256 }) },
          { additionalProperties: false },
        ),
        response: { 200: TokenResponse, ...errors(400, 401) },
      },
    },
    async (request) => {
      const { session, refreshToken } = await deps.sessions.rotate(request.body.refreshToken, request.ip);
      if (!deps.users.get(session.username)) {
        await deps.sessions.revokeAllForUser(session.username);
        throw unauthenticated('invalid refresh token');
      }
      return tokenResponse(session, refreshToken);
    },
  );
}

/** Routes for the logged-in caller's own sessions; registered in the authenticated context. */
export async function sessionRoutes(base: FastifyInstance, deps: AuthRouteDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/api/auth/logout',
    {
      schema: {
        tags,
        security: secured,
        summary: 'End the current session',
        response: { 204: Type.Null(), ...errors(401) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      await deps.sessions.revoke(caller.username, caller.sessionId);
      await deps.audit?.record({
        actor: caller.username,
        action: 'logout',
        target: caller.sessionId,
        ip: request.ip,
        outcome: 'ok',
      });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/auth/me',
    {
      schema: {
        tags,
        security: secured,
        summary: 'Who the token belongs to, and its session',
        response: {
          200: Type.Object({
            username: Type.String(),
            roles: Type.Array(Type.String()),
            session: Type.Object({ id: Type.String(), createdAt: IsoTime, expiresAt: IsoTime }),
          }),
          ...errors(401),
        },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const session = await deps.sessions.getLive(caller.sessionId);
      if (!session) throw unauthenticated('the session has ended');
      return {
        username: caller.username,
        roles: caller.roles,
        session: { id: session.id, createdAt: iso(session.createdAt), expiresAt: iso(session.expiresAt) },
      };
    },
  );

  app.get(
    '/api/auth/sessions',
    {
      schema: {
        tags,
        security: secured,
        summary: "The caller's live sessions",
        response: { 200: Type.Object({ items: Type.Array(SessionItem) }), ...errors(401) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const sessions = await deps.sessions.listLive(caller.username);
      return {
        items: sessions.map((s) => ({
          id: s.id,
          createdAt: iso(s.createdAt),
          lastUsedAt: iso(s.lastUsedAt),
          expiresAt: iso(s.expiresAt),
          userAgent: s.userAgent,
          ip: s.ip,
          current: s.id === caller.sessionId,
        })),
      };
    },
  );

  app.delete(
    '/api/auth/sessions/:id',
    {
      schema: {
        tags,
        security: secured,
        summary: 'Revoke one of your sessions',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 204: Type.Null(), ...errors(401, 404) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const revoked = await deps.sessions.revoke(caller.username, request.params.id);
      if (!revoked) throw new AppError('NOT_FOUND', 'No such session.');
      await deps.audit?.record({
        actor: caller.username,
        action: 'session_revoked',
        target: request.params.id,
        ip: request.ip,
        outcome: 'ok',
      });
      return reply.code(204).send(null);
    },
  );
}
