import { useState, type FormEvent } from 'react';
import { describeError, type Connection } from '../connection';
import { splitUsers } from '../format';
import { isValidUserId, type ChatState, type ConversationState } from '../protocol';
import { PresenceDot } from './PresenceDot';

interface Props {
  conversation: ConversationState;
  state: ChatState;
  conn: Connection;
  onLeft: () => void;
  onClose: () => void;
}

export function MembersPanel({ conversation, state, conn, onLeft, onClose }: Props) {
  const me = state.me;
  const isGroup = conversation.kind === 'group';
  const amAdmin = conversation.admins.includes(me);
  const [add, setAdd] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [confirmLeave, setConfirmLeave] = useState(false);

  const run = async (fn: () => Promise<unknown>, after?: () => void) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
      after?.();
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  };

  const onAdd = (e: FormEvent) => {
    e.preventDefault();
    const users = splitUsers(add).filter((u) => !conversation.members.includes(u));
    const bad = users.find((u) => !isValidUserId(u));
    if (bad) return setError(`“${bad}” is not a valid user id.`);
    if (users.length === 0) return setError('Enter at least one new member.');
    void run(() => conn.addMembers(conversation.id, users), () => setAdd(''));
  };

  const members = [...conversation.members].sort((a, b) => (a === me ? -1 : b === me ? 1 : a < b ? -1 : a > b ? 1 : 0));

  return (
    <section id="members-panel" className="members-panel" aria-label="Members" data-testid="members-panel">
      <div className="members-header">
        <h3>{isGroup ? 'Members' : 'Conversation'}</h3>
        <button type="button" className="small" onClick={onClose} aria-label="Close members">
          Close
        </button>
      </div>
      <ul className="member-list">
        {members.map((u) => (
          <li key={u} data-testid="member-item" data-user={u}>
            {u !== me && <PresenceDot user={u} info={state.presence[u]} />}
            <span className="member-name">
              {u}
              {u === me && ' (you)'}
            </span>
            {conversation.admins.includes(u) && <span className="tag">admin</span>}
            {isGroup && amAdmin && u !== me && (
              <button
                type="button"
                className="small danger"
                data-testid="remove-member"
                disabled={busy}
                aria-label={`Remove ${u}`}
                onClick={() => void run(() => conn.removeMembers(conversation.id, [u]))}
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      {isGroup && amAdmin && (
        <form onSubmit={onAdd} className="add-member">
          <label htmlFor="add-member-input">Add members (comma-separated)</label>
          <div className="row">
            <input
              id="add-member-input"
              data-testid="add-member-input"
              autoCapitalize="none"
              spellCheck={false}
              value={add}
              onChange={(e) => setAdd(e.target.value)}
            />
            <button type="submit" className="primary" data-testid="add-member-submit" disabled={busy || !add.trim()}>
              Add
            </button>
          </div>
        </form>
      )}
      {isGroup &&
        (confirmLeave ? (
          <div className="row" role="group" aria-label="Confirm leaving">
            <span>Leave “{conversation.title ?? 'this group'}”?</span>
            <button
              type="button"
              className="danger"
              data-testid="leave-confirm"
              disabled={busy}
              onClick={() => void run(() => conn.removeMembers(conversation.id, [me]), onLeft)}
            >
              Leave
            </button>
            <button type="button" onClick={() => setConfirmLeave(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <button type="button" className="danger" data-testid="leave-button" onClick={() => setConfirmLeave(true)}>
            Leave group
          </button>
        ))}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
