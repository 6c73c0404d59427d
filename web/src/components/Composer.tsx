import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { describeError, type Connection } from '../connection';
import { formatBytes, uploadFile } from '../media';
import { charCount, MAX_BODY_CHARS, type Attachment } from '../protocol';

/** An upload under way or done, shown above the composer until the message is sent. */
interface Upload {
  name: string;
  size: number;
  progress: number;
  /** Uploaded and accepted: what the message will carry. */
  attachment?: Attachment;
  error?: string;
}

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
  const [upload, setUpload] = useState<Upload | null>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const attached = upload?.attachment ? [upload.attachment] : [];
  const uploading = upload !== null && !upload.attachment && !upload.error;
  const empty = text.trim() === '' && attached.length === 0;

  useEffect(() => {
    drafts.set(conversationId, text);
  }, [conversationId, text]);

  useEffect(() => {
    // Focus the composer on a wide screen when a conversation opens.
    if (globalThis.matchMedia?.('(min-width: 700px)').matches) ref.current?.focus();
    return () => conn.stopTyping(conversationId);
  }, [conn, conversationId]);

  const send = () => {
    if (empty || tooLong || uploading) return;
    conn.sendMessage(conversationId, text, attached);
    setText('');
    setUpload(null);
    ref.current?.focus();
  };

  const attach = (file: File | undefined) => {
    if (!file) return;
    const started: Upload = { name: file.name, size: file.size, progress: 0 };
    setUpload(started);
    uploadFile(conn.token, file, (progress) => setUpload((u) => (u && u.name === file.name ? { ...u, progress } : u)))
      .then((attachment) => setUpload((u) => (u && u.name === file.name ? { ...u, progress: 1, attachment } : u)))
      .catch((e) => setUpload((u) => (u && u.name === file.name ? { ...u, error: describeError(e) } : u)));
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
      {upload && (
        <div className="upload" data-testid="upload" data-state={upload.error ? 'failed' : upload.attachment ? 'ready' : 'uploading'}>
          <span className="file-name">{upload.name}</span> <span className="file-size">{formatBytes(upload.size)}</span>
          {uploading && (
            <progress data-testid="upload-progress" max={1} value={upload.progress} aria-label={`Uploading ${upload.name}`} />
          )}
          {upload.error && <span className="error">{upload.error}</span>}
          <button type="button" className="link" aria-label="Remove the attachment" onClick={() => setUpload(null)}>
            ×
          </button>
        </div>
      )}
      <input
        ref={fileRef}
        type="file"
        className="sr-only"
        data-testid="attach-input"
        accept="image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain"
        onChange={(e) => {
          attach(e.target.files?.[0]);
          e.target.value = '';
        }}
      />
      <button
        type="button"
        className="attach"
        data-testid="attach-button"
        aria-label="Attach a picture or file"
        disabled={uploading}
        onClick={() => fileRef.current?.click()}
      >
        <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2">
          <path d="M21 11.5 12.5 20a5 5 0 0 1-7-7L14 4.5a3.5 3.5 0 0 1 5 5L10.5 18a2 2 0 0 1-3-3L15 7.5" />
        </svg>
      </button>
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
      <button type="submit" className="primary" data-testid="send-button" disabled={empty || tooLong || uploading}>
        Send
      </button>
    </form>
  );
}
