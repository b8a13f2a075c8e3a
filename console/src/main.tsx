import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { session, type User } from './api';
import { navigate, onLink, usePath } from './router';
import { SignIn } from './pages/SignIn';
import { Library } from './pages/Library';
import { ItemPage } from './pages/Item';
import { Sessions } from './pages/Sessions';
import { Users } from './pages/Users';
import { AuditLog } from './pages/AuditLog';
import './styles.css';

function useUser(): { user: User | null; ready: boolean } {
  const [state, setState] = useState({ user: session.user, ready: session.user !== null });
  useEffect(() => {
    const update = () => setState({ user: session.user, ready: true });
    session.listeners.add(update);
    // A reload within the tab: the refresh token in sessionStorage signs the person back in.
    if (!session.user) void session.refresh().finally(update);
    return () => void session.listeners.delete(update);
  }, []);
  return state;
}

function Nav({ user }: { user: User }) {
  const admin = user.roles.includes('admin');
  return (
    <header class="top">
      <span class="brand" aria-hidden="true">
        Stowage
      </span>
      <nav aria-label="Main">
        <a href="/app/library" onClick={onLink}>
          Library
        </a>
        <a href="/app/sessions" onClick={onLink}>
          Sessions
        </a>
        {admin && (
          <a href="/app/users" onClick={onLink}>
            Users
          </a>
        )}
        {admin && (
          <a href="/app/audit" onClick={onLink}>
            Audit log
          </a>
        )}
        <button
          type="button"
          onClick={() => {
            void session.signOut().then(() => navigate('/', true));
          }}
        >
          Sign out
        </button>
      </nav>
    </header>
  );
}

function App() {
  const { user, ready } = useUser();
  const path = usePath();
  if (!ready) return <p class="loading">Loading…</p>;
  if (!user) return <SignIn />;
  const item = /^\/app\/items\/([^/]+)$/.exec(path);
  let page;
  if (item?.[1]) page = <ItemPage id={decodeURIComponent(item[1])} />;
  else if (path === '/app/sessions') page = <Sessions />;
  else if (path === '/app/users' && user.roles.includes('admin')) page = <Users />;
  else if (path === '/app/audit' && user.roles.includes('admin')) page = <AuditLog />;
  else page = <Library />;
  return (
    <>
      <Nav user={user} />
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById('root')!);
