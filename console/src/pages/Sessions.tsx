import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, ok } from '../api';
import { formatDate } from '../format';
import type { paths } from '../api-schema';
import { Alert } from '../components/Alert';

type SessionRow =
  paths['/api/auth/sessions']['get']['responses'][200]['content']['application/json']['items'][number];

export function Sessions() {
  const [rows, setRows] = useState<SessionRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () =>
    ok(api.GET('/api/auth/sessions'))
      .then((page) => setRows(page.items))
      .catch((e: unknown) => setError(messageOf(e)));
  useEffect(() => void load(), []);

  const revoke = async (id: string) => {
    try {
      await ok(api.DELETE('/api/auth/sessions/{id}', { params: { path: { id } } }));
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  return (
    <section>
      <h1>Sessions</h1>
      <Alert message={error} />
      {rows && (
        <div class="table">
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Address</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Action</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((s) => (
                <tr key={s.id}>
                  <td>{s.userAgent ?? 'Unknown device'}</td>
                  <td>{s.ip ?? '—'}</td>
                  <td>{formatDate(s.lastUsedAt)}</td>
                  <td>
                    {s.current ? (
                      <strong>This session</strong>
                    ) : (
                      <button type="button" onClick={() => void revoke(s.id)}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
