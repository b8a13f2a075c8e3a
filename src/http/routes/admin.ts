import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { SessionService } from '../../auth/sessions.ts';
import type { UsersStore } from '../../auth/users-store.ts';
import { AUDIT_ACTIONS, type AuditLog } from '../../audit/audit-log.ts';
import { AppError } from '../../errors.ts';
import { callerOf } from '../plugins/authenticate.ts';
import { errors, iso, IsoTime } from '../schemas.ts';

export interface AdminRouteDeps {
  users: UsersStore;
  sessions: SessionService;
  /** What each of these users has stored (absent: nothing). */
  usageOf(usernames: readonly string[]): Promise<Map<string, { files: number; bytes: number }>>;
  audit: AuditLog;
}

const tags = ['admin'];
const security = [{ bearer: [] }];

const AdminUser = Type.Object(
  {
    username: Type.String(),
    roles: Type.Array(Type.String()),
    usage: Type.Object({ files: Type.Integer(), bytes: Type.Integer() }),
    sessions: Type.Integer({ description: 'live sessions' }),
  },
  { $id: 'AdminUser' },
);

const AuditEntry = Type.Object(
  {
    id: Type.String(),
    at: IsoTime,
    actor: Type.Union([Type.String(), Type.Null()], {
      description: 'who did it; for a login attempt, the username given',
    }),
    action: Type.Enum(AUDIT_ACTIONS),
    target: Type.Union([Type.String(), Type.Null()], {
      description: 'a media id, link id, session id or username (never a token)',
    }),
    ip: Type.Union([Type.String(), Type.Null()]),
    outcome: Type.String({ description: '"ok" or the error code' }),
  },
  { $id: 'AuditEntry' },
);

/**
 * Routes for administrators only; registered in the authenticated context, inside a context of
 * their own whose first hook refuses everyone else (403) before anything of the request is read.
 */
export async function adminRoutes(base: FastifyInstance, deps: AdminRouteDeps): Promise<void> {
  await base.register(async (scope) => {
    scope.addHook('onRequest', async (request) => {
      if (!callerOf(request).isAdmin) throw new AppError('FORBIDDEN', 'Only administrators may do this.');
    });
    await routes(scope, deps);
  });
}

async function routes(base: FastifyInstance, deps: AdminRouteDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/api/admin/users',
    {
      schema: {
        tags,
        security,
        summary: 'Every user, with their storage usage and number of live sessions',
        response: { 200: Type.Object({ items: Type.Array(AdminUser) }), ...errors(401, 403) },
      },
    },
    async () => {
      const users = deps.users.list().sort((a, b) => (a.username < b.username ? -1 : 1));
      const names = users.map((u) => u.username);
      const [usage, sessions] = await Promise.all([deps.usageOf(names), deps.sessions.countLive(names)]);
      return {
        items: users.map((user) => ({
          username: user.username,
          roles: user.roles,
          usage: usage.get(user.username) ?? { files: 0, bytes: 0 },
          sessions: sessions.get(user.username) ?? 0,
        })),
      };
    },
  );

  app.delete(
    '/api/admin/users/:name/sessions',
    {
      schema: {
        tags,
        security,
        summary: 'End every session of a user, on every instance within a second',
        params: Type.Object({ name: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: { 204: Type.Null(), ...errors(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { name } = request.params;
      if (!deps.users.get(name)) throw new AppError('NOT_FOUND', 'No such user.');
      const caller = callerOf(request);
      await deps.sessions.revokeAllForUser(name);
      await deps.audit.record({
        actor: caller.username,
        action: 'session_revoked',
        target: name,
        ip: request.ip,
        outcome: 'ok',
      });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/admin/audit',
    {
      schema: {
        tags,
        security,
        summary: 'The audit log, newest first, with cursor pagination',
        querystring: Type.Object({
          limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
          cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
          user: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'the actor' })),
          action: Type.Optional(Type.Enum(AUDIT_ACTIONS)),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(AuditEntry),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors(400, 401, 403),
        },
      },
    },
    async (request) => {
      const page = await deps.audit.list(request.query);
      return {
        items: page.items.map((entry) => ({ ...entry, at: iso(entry.at) })),
        nextCursor: page.nextCursor,
      };
    },
  );
}
