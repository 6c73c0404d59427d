import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import type { Connection } from '../connection';
import { charCount, MAX_BODY_CHARS } from '../protocol';

/** Unsent drafts survive switching conversations. */
const drafts = new Map<string, string>();

export function clearDrafts() {
  drafts.clear();
}

export function Composer({ conversationId, conn }: { conversationId: string; conn: Connection }) {
  const [text, setText] = useState(() => drafts.get(conversationId) ?? '');
  const ref = useRef<HTMLTextAreaElement>(null);
  const count = charCount(text);
  const tooLong = count > MAX_BODY_CHARS;
  const empty = text.trim() === '';

  useEffect(() => {
    drafts.set(conversationId, text);
  }, [conversationId, text]);

  useEffect(() => {
    // Focus the composer on a wide screen when a conversation opens.
    if (globalThis.matchMedia?.('(min-width: 700px)').matches) ref.current?.focus();
    return () => conn.stopTyping(conversationId);
  }, [conn, conversationId]);

  const send = () => {
    if (empty || tooLong) return;
    conn.sendMessage(conversationId, text);
    setText('');
    ref.current?.focus();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <label htmlFor="composer-input" className="sr-only">
        Message
      </label>
      <textarea
        id="composer-input"
        ref={ref}
        data-testid="composer"
        rows={Math.min(6, Math.max(1, text.split("\n").length))}
        placeholder="Message"
        value={text}
        aria-describedby="composer-hint"
        aria-invalid={tooLong || undefined}
        onChange={(e) => {
          setText(e.target.value);
          conn.typing(conversationId, e.target.value);
        }}
        onBlur={() => conn.stopTyping(conversationId)}
        onKeyDown={onKeyDown}
      />
      <span id="composer-hint" className="sr-only">
        Enter sends, Shift+Enter adds a new line.
      </span>
      {count > MAX_BODY_CHARS - 200 && (
        <span className={`counter ${tooLong ? 'error' : ''}`} aria-live="polite">
          {count}/{MAX_BODY_CHARS}
        </span>
      )}
      <button type="submit" className="primary" data-testid="send-button" disabled={empty || tooLong}>
        Send
      </button>
    </form>
  );
}
