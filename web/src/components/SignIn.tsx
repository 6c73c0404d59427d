import { useState, type FormEvent } from 'react';
import { ApiError, devToken } from '../api';
import { isValidUserId, MODERATOR_ROLE } from '../protocol';
import { sessionFromToken, type Session } from '../session';

export function SignIn({ onSignedIn, notice }: { onSignedIn: (s: Session) => void; notice: string | null }) {
  const [user, setUser] = useState('');
  const [moderator, setModerator] = useState(false);
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [tokenError, setTokenError] = useState<string | null>(null);

  const signInDev = async (e: FormEvent) => {
    e.preventDefault();
    const u = user.trim();
    if (!isValidUserId(u)) {
      setError('A user name is 1–64 characters: letters, digits, and _ . @ -');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const r = await devToken(u, '', moderator ? [MODERATOR_ROLE] : []);
      const s = sessionFromToken(r.token);
      if ('error' in s) throw new Error(s.error);
      onSignedIn(s);
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        setError('Dev sign-in is not enabled on this server. Paste a token instead.');
      } else if (err instanceof ApiError && err.status === 0) {
        setError('Cannot reach the server. Check your connection and try again.');
      } else {
        setError(err instanceof Error ? `Sign-in failed: ${err.message}` : 'Sign-in failed');
      }
    } finally {
      setBusy(false);
    }
  };

  const signInToken = (e: FormEvent) => {
    e.preventDefault();
    const s = sessionFromToken(token);
    if ('error' in s) {
      setTokenError(s.error);
      return;
    }
    setTokenError(null);
    onSignedIn(s);
  };

  return (
    <main className="signin" data-testid="signin-screen">
      <div className="signin-card">
        <h1>Chat</h1>
        {notice && (
          <p className="notice" role="alert" data-testid="signin-notice">
            {notice}
          </p>
        )}
        <form onSubmit={signInDev} aria-labelledby="dev-signin-heading">
          <h2 id="dev-signin-heading">Sign in</h2>
          <label htmlFor="signin-user">User name</label>
          <input
            id="signin-user"
            data-testid="signin-user"
            autoComplete="username"
            autoCapitalize="none"
            spellCheck={false}
            autoFocus
            maxLength={64}
            value={user}
            onChange={(e) => setUser(e.target.value)}
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? 'signin-error' : 'signin-hint'}
          />
          <p id="signin-hint" className="hint">
            Development sign-in: asks the server for a token for this name.
          </p>
          <label className="checkbox">
            <input
              type="checkbox"
              data-testid="signin-moderator"
              checked={moderator}
              onChange={(e) => setModerator(e.target.checked)}
            />
            Sign in as a moderator (development servers only)
          </label>
          {error && (
            <p id="signin-error" className="error" role="alert" data-testid="signin-error">
              {error}
            </p>
          )}
          <button type="submit" className="primary" data-testid="signin-submit" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
        </form>
        <div className="divider" role="separator">
          <span>or</span>
        </div>
        <form onSubmit={signInToken} aria-labelledby="token-signin-heading">
          <h2 id="token-signin-heading">Use an access token</h2>
          <label htmlFor="signin-token">Access token (JWT)</label>
          <textarea
            id="signin-token"
            data-testid="signin-token"
            rows={3}
            spellCheck={false}
            value={token}
            onChange={(e) => setToken(e.target.value)}
            aria-invalid={tokenError ? true : undefined}
            aria-describedby={tokenError ? 'token-error' : undefined}
          />
          {tokenError && (
            <p id="token-error" className="error" role="alert">
              {tokenError}
            </p>
          )}
          <button type="submit" data-testid="signin-token-submit" disabled={!token.trim()}>
            Continue with token
          </button>
        </form>
      </div>
    </main>
  );
}
