import { useState } from 'preact/hooks';
import { messageOf, session } from '../api';
import { navigate } from '../router';
import { Alert } from '../components/Alert';

export function SignIn() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await session.signIn(username, password);
      if (!location.pathname.startsWith('/app/')) navigate('/app/library', true);
    } catch (e) {
      setError(messageOf(e));
      setPassword('');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin">
      <h1>Stowage</h1>
      <form onSubmit={(e) => void submit(e)}>
        <label>
          Username
          <input
            name="username"
            autocomplete="username"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <Alert message={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
