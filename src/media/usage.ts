import type { Db } from '../db/database.ts';

/** Storage used per user, kept in one row per user so a quota check is a single-row update. */
export class UsageService {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async of(username: string): Promise<{ files: number; bytes: number }> {
    const row = await this.#db
      .selectFrom('usage')
      .select(['files', 'bytes'])
      .where('username', '=', username)
      .executeTakeFirst();
    return { files: Number(row?.files ?? 0), bytes: Number(row?.bytes ?? 0) };
  }
}
