import { useEffect, useState } from 'preact/hooks';
import { authedFetch, errorFrom, messageOf } from '../api';
import { formatDate } from '../format';
import { Alert } from '../components/Alert';

interface Entry {
  id: string;
  at: string;
  actor: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  outcome: string;
}

const ACTIONS = [
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
  const [entries, setEntries] = useState<Entry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = async (from: string | null) => {
    const query = new URLSearchParams({ limit: '100' });
    if (user.trim()) query.set('user', user.trim());
    if (action) query.set('action', action);
    if (from) query.set('cursor', from);
    try {
      const res = await authedFetch(`/api/admin/audit?${query.toString()}`);
      if (!res.ok) throw await errorFrom(res);
      const page = (await res.json()) as { items: Entry[]; nextCursor: string | null };
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
