import { useEffect, useMemo, useState } from 'react';
import { createApi } from '../api';
import { Connection } from '../connection';
import { useChatState, useConnectionStatus, useHashConversation, usePageVisible } from '../hooks';
import { createModerationApi } from '../moderationApi';
import { createStore, totalUnread } from '../protocol';
import { configuredOrigins, isModerator, loadPending, savePending, type Session } from '../session';
import { clearDrafts } from './Composer';
import { ConversationList } from './ConversationList';
import { ConversationView } from './ConversationView';
import { ModerationPanel } from './ModerationPanel';
import { NewChat } from './NewChat';

interface Props {
  session: Session;
  onSignOut: (reason?: string) => void;
}

export function ChatApp({ session, onSignOut }: Props) {
  const { store, conn } = useMemo(() => {
    const store = createStore(session.user);
    store.dispatch({ type: 'pending.restore', pending: loadPending(session.user) });
    const conn = new Connection({
      token: session.token,
      store,
      api: createApi(session.token),
      origins: configuredOrigins(),
      onAuthFailure: (reason) =>
        onSignOut(reason === 'expired' ? 'Your session expired. Sign in again.' : 'The server rejected your token. Sign in again.'),
    });
    return { store, conn };
  }, [session.token]);

  useEffect(() => {
    conn.start();
    let last = store.getState().pending;
    const unsub = store.subscribe(() => {
      const p = store.getState().pending;
      if (p !== last) {
        last = p;
        savePending(session.user, Object.values(p));
      }
    });
    return () => {
      unsub();
      conn.stop();
      clearDrafts();
    };
  }, [conn, store, session.user]);

  const state = useChatState(store);
  const status = useConnectionStatus(conn);
  const [selected, select] = useHashConversation();
  const visible = usePageVisible();
  const [showNew, setShowNew] = useState(false);
  // Only a token claiming the role gets the panel; the server checks the role on every call.
  const moderationApi = useMemo(() => (isModerator(session) ? createModerationApi(session.token) : null), [session]);
  const [showModeration, setShowModeration] = useState(false);

  const openConv = selected && state.conversations[selected] ? selected : null;
  useEffect(() => {
    conn.setView(openConv, visible);
  }, [conn, openConv, visible]);

  const unread = totalUnread(state);
  useEffect(() => {
    document.title = unread ? `(${unread}) Chat` : 'Chat';
  }, [unread]);

  const down = status === 'reconnecting';
  return (
    <div className={`app ${selected || showModeration ? 'has-selection' : ''}`}>
      {down && (
        <div className="banner banner-down" role="status" data-testid="banner-disconnected">
          Disconnected — reconnecting…
        </div>
      )}
      {status === 'connecting' && (
        <div className="banner banner-connecting" role="status" data-testid="banner-connecting">
          Connecting…
        </div>
      )}
      <div className="panes">
        <aside className="sidebar" aria-label="Conversations">
          <header className="sidebar-header">
            <div className="me">
              <span className="avatar" aria-hidden>
                {session.user.slice(0, 1).toUpperCase()}
              </span>
              <span className="me-name">
                <span className="sr-only">Signed in as </span>
                <strong data-testid="me">{session.user}</strong>
              </span>
            </div>
            <div className="header-actions">
              <button
                type="button"
                className="primary small"
                data-testid="new-chat-toggle"
                aria-expanded={showNew}
                aria-controls="new-chat"
                onClick={() => setShowNew((v) => !v)}
              >
                New chat
              </button>
              {moderationApi && (
                <button
                  type="button"
                  className="small"
                  data-testid="moderation-toggle"
                  aria-pressed={showModeration}
                  onClick={() => setShowModeration((v) => !v)}
                >
                  Moderation
                </button>
              )}
              <button type="button" className="small" data-testid="signout-button" onClick={() => onSignOut()}>
                Sign out
              </button>
            </div>
          </header>
          {showNew && (
            <NewChat
              conn={conn}
              me={session.user}
              onCreated={(id) => {
                setShowNew(false);
                select(id);
              }}
              onCancel={() => setShowNew(false)}
            />
          )}
          <ConversationList
            state={state}
            selected={openConv}
            onSelect={(id) => {
              setShowModeration(false);
              select(id);
            }}
          />
        </aside>
        <main className="conversation-pane">
          {moderationApi && showModeration ? (
            <ModerationPanel api={moderationApi} onClose={() => setShowModeration(false)} />
          ) : openConv ? (
            <ConversationView key={openConv} conversationId={openConv} state={state} conn={conn} onBack={() => select(null)} />
          ) : (
            <div className="empty-pane">
              {selected && Object.keys(state.conversations).length > 0 ? (
                <p>This conversation is not available.</p>
              ) : (
                <p>Select a conversation, or start a new chat.</p>
              )}
              {selected && (
                <button type="button" className="back" onClick={() => select(null)}>
                  Back to conversations
                </button>
              )}
            </div>
          )}
        </main>
      </div>
    </div>
  );
}
