import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { callerOf } from '../plugins/authenticate.ts';
import { errors } from '../schemas.ts';

export interface UsersRouteDeps {
  usageOf(username: string): Promise<{ files: number; bytes: number }>;
  quotaBytes: number | null;
}

export async function userRoutes(base: FastifyInstance, deps: UsersRouteDeps): Promise<void> {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/api/users/me',
    {
      schema: {
        tags: ['users'],
        security: [{ bearer: [] }],
        summary: 'The caller, their storage usage and quota',
        response: {
          200: Type.Object({
            username: Type.String(),
            roles: Type.Array(Type.String()),
            usage: Type.Object({ files: Type.Integer(), bytes: Type.Integer() }),
            quota: Type.Object({ bytes: Type.Union([Type.Integer(), Type.Null()]) }),
          }),
          ...errors(401),
        },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return {
        username: caller.username,
        roles: caller.roles,
        usage: await deps.usageOf(caller.username),
        quota: { bytes: deps.quotaBytes },
      };
    },
  );
}
