import { useId, useState } from 'react';
import { formatTime } from '../format';
import {
  describeEvent,
  itemKey,
  MAX_ACTION_REASON,
  suggestedReason,
  userKey,
  type MessageAction,
  type ModerationState,
  type QueueItem,
  type UserAction,
} from '../protocol';

interface Props {
  item: QueueItem;
  busy: ModerationState['busy'];
  outcome: ModerationState['outcome'];
  onMessageAction: (action: MessageAction, reason: string) => void;
  onUserAction: (user: string, action: UserAction, minutes?: number) => void;
}

const MESSAGE_ACTIONS: { action: MessageAction; label: string; className: string }[] = [
  { action: 'redact', label: 'Redact', className: 'danger' },
  { action: 'restore', label: 'Restore', className: '' },
  { action: 'dismiss', label: 'Dismiss', className: '' },
];

/** A mute (and a timed ban) lasts this long unless the moderator says otherwise (server: 1..10080). */
const DEFAULT_MINUTES = 60;
const MAX_MINUTES = 7 * 24 * 60;

/** One queued message: the original, every flag and report on it, and what a moderator can do. */
export function QueueItemCard({ item, busy, outcome, onMessageAction, onUserAction }: Props) {
  const id = useId();
  const key = itemKey(item);
  const result = outcome[key];
  // Members see the reason on the placeholder: start from what the flag or report said.
  const [reason, setReason] = useState(() => suggestedReason(item));
  return (
    <li
      className="queue-item"
      data-testid="queue-item"
      data-conversation-id={item.conversation_id}
      data-seq={item.seq}
      data-status={item.status}
    >
      <p className="queue-where">
        <span>{item.conversation_id}</span> · <span>#{item.seq}</span> · <span className="tag">{item.status}</span>
      </p>
      {item.message ? (
        <blockquote className="queue-message" data-testid="queue-message">
          <span className="sender">{item.message.sender}</span>
          <span className="body">{item.message.body}</span>
          <time dateTime={new Date(item.message.ts).toISOString()}>{formatTime(item.message.ts)}</time>
        </blockquote>
      ) : (
        <p className="hint">The message is not in the store.</p>
      )}
      <ul className="queue-events" aria-label="Flags and reports">
        {item.entries.map((e, i) => (
          <li key={`${e.kind}-${e.at}-${i}`} data-testid="queue-event" data-kind={e.kind}>
            {describeEvent(e)}
          </li>
        ))}
      </ul>
      <div className="row" role="group" aria-label="Message actions">
        <label htmlFor={`${id}-reason`} className="sr-only">
          Reason
        </label>
        <input
          id={`${id}-reason`}
          className="queue-reason"
          data-testid="queue-reason"
          placeholder="Reason (shown to members)"
          maxLength={MAX_ACTION_REASON}
          value={reason}
          onChange={(e) => setReason(e.target.value)}
        />
        {MESSAGE_ACTIONS.map(({ action, label, className }) => (
          <button
            key={action}
            type="button"
            className={`small ${className}`}
            data-testid={`queue-${action}`}
            disabled={busy[key] !== undefined}
            onClick={() => onMessageAction(action, reason.trim())}
          >
            {busy[key] === action ? `${label}…` : label}
          </button>
        ))}
      </div>
      {result && (
        <p className={result.ok ? 'hint' : 'error'} role="status" data-testid="queue-outcome" data-outcome={result.ok ? 'ok' : 'error'}>
          {result.text}
        </p>
      )}
      {item.sender && <UserActions user={item.sender} busy={busy} outcome={outcome} onUserAction={onUserAction} />}
    </li>
  );
}

function UserActions({
  user,
  busy,
  outcome,
  onUserAction,
}: Pick<Props, 'busy' | 'outcome' | 'onUserAction'> & { user: string }) {
  const id = useId();
  const [minutes, setMinutes] = useState(String(DEFAULT_MINUTES));
  const key = userKey(user);
  const n = Number(minutes);
  const validMinutes = Number.isInteger(n) && n >= 1 && n <= MAX_MINUTES;
  const result = outcome[key];
  return (
    <div className="queue-user" role="group" aria-label={`Sanctions for ${user}`}>
      <span>
        Sender <strong>{user}</strong>:
      </span>
      <label htmlFor={`${id}-minutes`}>minutes</label>
      <input
        id={`${id}-minutes`}
        className="minutes"
        type="number"
        min={1}
        max={MAX_MINUTES}
        value={minutes}
        onChange={(e) => setMinutes(e.target.value)}
        aria-invalid={validMinutes ? undefined : true}
      />
      <button
        type="button"
        className="small"
        data-testid="user-mute"
        disabled={busy[key] !== undefined || !validMinutes}
        onClick={() => onUserAction(user, 'mute', n)}
      >
        Mute
      </button>
      <button
        type="button"
        className="small danger"
        data-testid="user-ban"
        disabled={busy[key] !== undefined}
        title="Without end"
        onClick={() => onUserAction(user, 'ban')}
      >
        Ban
      </button>
      <button type="button" className="small" data-testid="user-unban" disabled={busy[key] !== undefined} onClick={() => onUserAction(user, 'unban')}>
        Unban
      </button>
      {result && (
        <span className={result.ok ? 'hint' : 'error'} role="status" data-testid="user-outcome">
          {result.text}
        </span>
      )}
    </div>
  );
}
