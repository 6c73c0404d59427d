import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { describeError, type Connection } from '../connection';
import { formatTime } from '../format';
import { redactedText, type Bubble } from '../protocol';
import { Attachments } from './Attachments';
import { STATUS_LABEL, StatusIcon } from './icons';
import { ReportAction } from './ReportAction';

interface Props {
  conversationId: string;
  items: Bubble[];
  conn: Connection;
  me: string;
  isGroup: boolean;
  hasMore: boolean;
}

/** Scrolled this close to the top, older history loads. */
const LOAD_THRESHOLD_PX = 120;

export function MessageList({ conversationId, items, conn, me, hasMore }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const [loading, setLoading] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  /** Whether the view follows new messages (the user is at the bottom). */
  const stick = useRef(true);
  /** Scroll geometry before a history page is prepended, to keep the view still. */
  const anchor = useRef<{ height: number; top: number } | null>(null);
  const firstKey = useRef<string | null>(null);
  const lastKey = useRef<string | null>(null);
  const [announce, setAnnounce] = useState('');

  const loadMore = useCallback(() => {
    const el = ref.current;
    if (!el || loading || !hasMore) return;
    anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    setLoading(true);
    setLoadError(null);
    conn
      .loadOlder(conversationId)
      .catch((e) => {
        anchor.current = null;
        setLoadError(describeError(e));
      })
      .finally(() => setLoading(false));
  }, [conn, conversationId, hasMore, loading]);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const first = items.length ? items[0].key : null;
    const lastItem = items.length ? items[items.length - 1] : null;
    const last = lastItem?.key ?? null;
    const prepended = first !== firstKey.current && firstKey.current !== null && anchor.current;
    const appended = last !== lastKey.current;
    if (prepended && anchor.current) {
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    } else if (stick.current || (appended && lastItem?.mine && lastItem.seq === null)) {
      // Follow new messages at the bottom, and always show a message I just sent.
      el.scrollTop = el.scrollHeight;
      stick.current = true;
    }
    if (appended && lastKey.current !== null && lastItem && !lastItem.mine) {
      setAnnounce(`${lastItem.sender}: ${lastItem.body}`);
    }
    firstKey.current = first;
    lastKey.current = last;
  }, [items]);

  // Too little history to scroll? Keep loading until the view is filled or the start is reached.
  useEffect(() => {
    const el = ref.current;
    if (el && hasMore && !loading && !loadError && el.scrollHeight <= el.clientHeight + LOAD_THRESHOLD_PX) loadMore();
  }, [items, hasMore, loading, loadError, loadMore]);

  const onScroll = () => {
    const el = ref.current;
    if (!el) return;
    stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
    if (el.scrollTop < LOAD_THRESHOLD_PX) loadMore();
  };

  return (
    <div className="message-scroll" ref={ref} onScroll={onScroll} data-testid="message-list" tabIndex={0} aria-label="Messages">
      <div className="history-status">
        {loading && <span data-testid="history-loading">Loading earlier messages…</span>}
        {!loading && loadError && (
          <span className="error">
            Could not load earlier messages.{' '}
            <button type="button" className="link" onClick={() => { setLoadError(null); loadMore(); }}>
              Try again
            </button>
          </span>
        )}
        {!loading && !loadError && !hasMore && items.length > 0 && (
          <span data-testid="history-start">Beginning of the conversation</span>
        )}
      </div>
      <ol className="messages">
        {items.map((b) => (
          <MessageBubble key={b.key} b={b} me={me} conn={conn} />
        ))}
      </ol>
      <div className="sr-only" aria-live="polite" data-testid="live-announcer">
        {announce}
      </div>
    </div>
  );
}

function MessageBubble({ b, me, conn }: { b: Bubble; me: string; conn: Connection }) {
  const label = STATUS_LABEL[b.status];
  return (
    <li
      className={`bubble ${b.mine ? 'mine' : 'theirs'} status-${b.status}`}
      data-testid="message-bubble"
      data-seq={b.seq ?? undefined}
      data-status={b.status}
      data-sender={b.sender}
      data-client-msg-id={b.client_msg_id ?? undefined}
      data-redacted={b.redacted ? 'true' : undefined}
    >
      <span className="sender" data-testid="message-sender">
        {b.sender === me ? 'You' : b.sender}
      </span>
      {b.redacted ? (
        <p className="body redacted" data-testid="message-redacted">
          {redactedText(b.redacted.reason)}
        </p>
      ) : (
        <p className="body" data-testid="message-body">
          {b.body}
        </p>
      )}
      {b.attachments && !b.redacted && (
        <Attachments conversationId={b.conversation_id} attachments={b.attachments} token={conn.token} />
      )}
      <span className="meta">
        <time dateTime={b.ts ? new Date(b.ts).toISOString() : undefined}>{formatTime(b.ts)}</time>
        {b.mine && (
          <span className={`ticks ${b.status}`} data-testid="message-ticks" role="img" aria-label={label} title={label}>
            <StatusIcon status={b.status} />
          </span>
        )}
      </span>
      {!b.mine && b.seq !== null && !b.redacted && (
        <ReportAction conn={conn} conversationId={b.conversation_id} seq={b.seq} />
      )}
      {b.status === 'failed' && b.client_msg_id && (
        <div className="failed-actions" role="alert" data-testid="send-failure" data-code={b.code}>
          <span>Not sent{b.error ? ` — ${b.error}` : ''}.</span>
          {/* The rules would refuse the same text again: only Delete helps. */}
          {b.code !== 'blocked' && (
            <button type="button" className="link" data-testid="retry-button" onClick={() => conn.retry(b.client_msg_id!)}>
              Retry
            </button>
          )}
          <button type="button" className="link" data-testid="discard-button" onClick={() => conn.discard(b.client_msg_id!)}>
            Delete
          </button>
        </div>
      )}
    </li>
  );
}
