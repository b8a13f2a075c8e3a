import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, ok } from '../api';
import type { paths } from '../api-schema';
import { formatDate } from '../format';
import { Alert } from '../components/Alert';

type AuditQuery = NonNullable<paths['/api/admin/audit']['get']['parameters']['query']>;
type Action = NonNullable<AuditQuery['action']>;
type AuditEntry =
  paths['/api/admin/audit']['get']['responses'][200]['content']['application/json']['items'][number];

// Typed by the served OpenAPI document: an action the API does not know fails the build.
const ACTIONS: readonly Action[] = [
  'login',
  'login_failed',
  'logout',
  'refresh_reuse',
  'session_revoked',
  'upload',
  'upload_refused',
  'delete',
  'restore',
  'link_created',
  'link_revoked',
];

export function AuditLog() {
  const [user, setUser] = useState('');
  const [action, setAction] = useState('');
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = async (from: string | null) => {
    const query: AuditQuery = { limit: 100 };
    if (user.trim()) query.user = user.trim();
    if (action) query.action = action as Action;
    if (from) query.cursor = from;
    try {
      const page = await ok(api.GET('/api/admin/audit', { params: { query } }));
      setEntries((old) => (from ? [...old, ...page.items] : page.items));
      setCursor(page.nextCursor);
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    const timer = setTimeout(() => void load(null), 250);
    return () => clearTimeout(timer);
  }, [user, action]);

  return (
    <section>
      <h1>Audit log</h1>
      <div class="toolbar">
        <label>
          User
          <input value={user} onInput={(e) => setUser(e.currentTarget.value)} />
        </label>
        <label>
          Action
          <select value={action} onChange={(e) => setAction(e.currentTarget.value)}>
            <option value="">All</option>
            {ACTIONS.map((a) => (
              <option value={a}>{a}</option>
            ))}
          </select>
        </label>
      </div>
      <Alert message={error} />
      <div class="table">
        <table>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Address</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id}>
                <td>{formatDate(e.at)}</td>
                <td>{e.actor ?? '—'}</td>
                <td>{e.action}</td>
                <td>{e.target ?? '—'}</td>
                <td>{e.ip ?? '—'}</td>
                <td>{e.outcome}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {cursor && (
        <button type="button" onClick={() => void load(cursor)}>
          Older entries
        </button>
      )}
    </section>
  );
}
