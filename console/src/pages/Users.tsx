import { useEffect, useState } from 'preact/hooks';
import { api, messageOf, ok } from '../api';
import type { paths } from '../api-schema';
import { formatBytes } from '../format';
import { Alert } from '../components/Alert';

type UserRow =
  paths['/api/admin/users']['get']['responses'][200]['content']['application/json']['items'][number];

export function Users() {
  const [rows, setRows] = useState<UserRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const load = async () => {
    try {
      setRows((await ok(api.GET('/api/admin/users'))).items);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => void load(), []);

  const endSessions = async (name: string) => {
    try {
      await ok(api.DELETE('/api/admin/users/{name}/sessions', { params: { path: { name } } }));
      setStatus(`Every session of ${name} has ended.`);
      await load();
    } catch (e) {
      setError(messageOf(e));
    }
  };

  return (
    <section>
      <h1>Users</h1>
      <Alert message={error} />
      {status && <p role="status">{status}</p>}
      {rows && (
        <div class="table">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Roles</th>
                <th scope="col">Files</th>
                <th scope="col">Bytes</th>
                <th scope="col">Sessions</th>
                <th scope="col">
                  <span class="visually-hidden">Action</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rows.map((u) => (
                <tr key={u.username}>
                  <td>{u.username}</td>
                  <td>{u.roles.join(', ')}</td>
                  <td>{u.usage.files}</td>
                  <td>{formatBytes(u.usage.bytes)}</td>
                  <td>{u.sessions}</td>
                  <td>
                    <button
                      type="button"
                      aria-label={`End sessions of ${u.username}`}
                      onClick={() => void endSessions(u.username)}
                    >
                      End sessions
                    </button>
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
