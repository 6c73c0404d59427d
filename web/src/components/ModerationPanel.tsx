import { useCallback, useEffect, useReducer, useRef } from 'react';
import { describeError } from '../connection';
import { usePageVisible } from '../hooks';
import type { ModerationApi } from '../moderationApi';
import {
  initialModeration,
  itemKey,
  QUEUE_STATUSES,
  reduceModeration,
  userKey,
  type MessageAction,
  type QueueItem,
  type QueueStatus,
  type UserAction,
} from '../protocol';
import { QueueItemCard } from './QueueItemCard';

interface Props {
  api: ModerationApi;
  onClose: () => void;
}

/** The queue has no live feed: while the panel is open and the page visible, it is fetched again this often. */
export const QUEUE_REFRESH_MS = 5_000;

const TAB_LABEL: Record<QueueStatus, string> = {
  open: 'Open',
  redacted: 'Hidden by detectors',
  resolved: 'Resolved',
};

const DONE_TEXT: Record<MessageAction | UserAction, string> = {
  redact: 'Redacted: members now see a placeholder',
  restore: 'Restored for every member',
  dismiss: 'Dismissed',
  mute: 'Muted',
  ban: 'Banned',
  unban: 'Unbanned, strikes cleared',
};

/** The moderators' view: one queue tab at a time, and the actions on each entry. */
export function ModerationPanel({ api, onClose }: Props) {
  const [state, dispatch] = useReducer(reduceModeration, undefined, () => initialModeration());
  /** The tab being fetched: a refresh of the same tab waits for it; another tab's answer is stale. */
  const inFlight = useRef<QueueStatus | null>(null);

  const load = useCallback(
    async (status: QueueStatus) => {
      if (inFlight.current === status) return;
      inFlight.current = status;
      dispatch({ type: 'load.start' });
      try {
        dispatch({ type: 'load.done', status, items: await api.queue(status) });
      } catch (e) {
        dispatch({ type: 'load.failed', status, error: describeError(e) });
      } finally {
        if (inFlight.current === status) inFlight.current = null;
      }
    },
    [api],
  );

  const visible = usePageVisible();
  useEffect(() => {
    if (!visible) return;
    void load(state.status);
    const timer = setInterval(() => void load(state.status), QUEUE_REFRESH_MS);
    return () => clearInterval(timer);
  }, [load, state.status, visible]);

  /** Run one action; the queue reflects it once the sink has written it, so reload after. */
  const act = async (key: string, action: MessageAction | UserAction, run: () => Promise<string>) => {
    dispatch({ type: 'act.start', key, action });
    try {
      await run();
      dispatch({ type: 'act.done', key, text: DONE_TEXT[action] });
      void load(state.status);
    } catch (e) {
      dispatch({ type: 'act.failed', key, error: describeError(e) });
    }
  };

  const onMessageAction = (item: QueueItem, action: MessageAction, reason: string) =>
    act(itemKey(item), action, () => api.message(item.conversation_id, item.seq, action, reason));
  const onUserAction = (user: string, action: UserAction, minutes?: number) =>
    act(userKey(user), action, () => api.user(user, action, minutes));

  return (
    <section className="moderation-panel" aria-labelledby="moderation-title" data-testid="moderation-panel" data-status={state.status}>
      <header className="moderation-header">
        <h2 id="moderation-title">Moderation</h2>
        <div className="row" role="group" aria-label="Queue">
          {QUEUE_STATUSES.map((s) => (
            <button
              key={s}
              type="button"
              className={`small ${s === state.status ? 'primary' : ''}`}
              aria-pressed={s === state.status}
              data-testid={`queue-tab-${s}`}
              onClick={() => dispatch({ type: 'view', status: s })}
            >
              {TAB_LABEL[s]}
            </button>
          ))}
          <button type="button" className="small" data-testid="queue-refresh" onClick={() => void load(state.status)}>
            Refresh
          </button>
          <button type="button" className="small" data-testid="moderation-close" onClick={onClose}>
            Close
          </button>
        </div>
      </header>
      <div className="moderation-status" role="status">
        {state.loading && state.items.length === 0 && <span>Loading the queue…</span>}
        {state.error && <span className="error">Could not load the queue: {state.error}</span>}
        {!state.loading && !state.error && state.items.length === 0 && <span data-testid="queue-empty">Nothing here.</span>}
      </div>
      <ol className="queue" data-testid="queue-list">
        {state.items.map((item) => (
          <QueueItemCard
            key={item.id}
            item={item}
            busy={state.busy}
            outcome={state.outcome}
            onMessageAction={(action, reason) => void onMessageAction(item, action, reason)}
            onUserAction={(user, action, minutes) => void onUserAction(user, action, minutes)}
          />
        ))}
      </ol>
    </section>
  );
}
