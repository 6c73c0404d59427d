import { useState, type FormEvent } from 'react';
import { describeError, type Connection } from '../connection';
import { splitUsers } from '../format';
import { isValidUserId, MAX_TITLE_CHARS } from '../protocol';

interface Props {
  conn: Connection;
  me: string;
  onCreated: (conversationId: string) => void;
  onCancel: () => void;
}

export function NewChat({ conn, me, onCreated, onCancel }: Props) {
  const [peer, setPeer] = useState('');
  const [title, setTitle] = useState('');
  const [members, setMembers] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const run = async (fn: () => Promise<{ id: string }>) => {
    setBusy(true);
    setError(null);
    try {
      const c = await fn();
      onCreated(c.id);
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  };

  const createDirect = (e: FormEvent) => {
    e.preventDefault();
    const u = peer.trim();
    if (!isValidUserId(u)) return setError('Enter a valid user id (letters, digits, _ . @ -).');
    if (u === me) return setError('Pick someone other than yourself.');
    void run(() => conn.createDirect(u));
  };

  const createGroup = (e: FormEvent) => {
    e.preventDefault();
    const list = splitUsers(members).filter((u) => u !== me);
    const bad = list.find((u) => !isValidUserId(u));
    if (bad) return setError(`“${bad}” is not a valid user id.`);
    if (!title.trim()) return setError('Give the group a title.');
    void run(() => conn.createGroup(title.trim(), list));
  };

  return (
    <section
      id="new-chat"
      className="new-chat"
      aria-label="New chat"
      data-testid="new-chat"
      onKeyDown={(e) => {
        if (e.key === 'Escape') onCancel();
      }}
    >
      <form onSubmit={createDirect} className="new-chat-form">
        <label htmlFor="new-direct-input">Direct chat with user</label>
        <div className="row">
          <input
            id="new-direct-input"
            data-testid="new-direct-input"
            autoCapitalize="none"
            spellCheck={false}
            autoFocus
            placeholder="user id"
            value={peer}
            onChange={(e) => setPeer(e.target.value)}
          />
          <button type="submit" className="primary" data-testid="new-direct-submit" disabled={busy || !peer.trim()}>
            Start
          </button>
        </div>
      </form>
      <form onSubmit={createGroup} className="new-chat-form">
        <fieldset>
          <legend>New group</legend>
          <label htmlFor="new-group-title">Title</label>
          <input
            id="new-group-title"
            data-testid="new-group-title"
            maxLength={MAX_TITLE_CHARS}
            value={title}
            onChange={(e) => setTitle(e.target.value)}
          />
          <label htmlFor="new-group-members">Members (comma-separated user ids)</label>
          <input
            id="new-group-members"
            data-testid="new-group-members"
            autoCapitalize="none"
            spellCheck={false}
            placeholder="bob, carol"
            value={members}
            onChange={(e) => setMembers(e.target.value)}
          />
          <div className="row end">
            <button type="button" onClick={onCancel}>
              Cancel
            </button>
            <button type="submit" className="primary" data-testid="new-group-submit" disabled={busy || !title.trim()}>
              Create group
            </button>
          </div>
        </fieldset>
      </form>
      {error && (
        <p className="error" role="alert" data-testid="new-chat-error">
          {error}
        </p>
      )}
    </section>
  );
}
