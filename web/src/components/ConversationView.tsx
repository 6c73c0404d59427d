import { useState } from 'react';
import type { Connection } from '../connection';
import { formatLastSeen } from '../format';
import { bubbles, conversationTitle, directPeer, historyBefore, typingUsers, type ChatState } from '../protocol';
import { Composer } from './Composer';
import { MembersPanel } from './MembersPanel';
import { MessageList } from './MessageList';
import { PresenceDot } from './PresenceDot';

interface Props {
  conversationId: string;
  state: ChatState;
  conn: Connection;
  onBack: () => void;
}

export function typingText(users: string[]): string {
  if (users.length === 0) return '';
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return `${users[0]}, ${users[1]} and ${users.length - 2} more are typing…`;
}

export function ConversationView({ conversationId, state, conn, onBack }: Props) {
  const conv = state.conversations[conversationId];
  const [showMembers, setShowMembers] = useState(false);
  if (!conv) return null;
  const title = conversationTitle(state, conv);
  const peer = directPeer(state, conv);
  const items = bubbles(state, conversationId);
  const typing = typingUsers(state, conversationId, Date.now());
  const peerInfo = peer ? state.presence[peer] : undefined;

  return (
    <section className={`conversation ${conv.kind}`} aria-labelledby="conversation-title" data-testid="conversation-view" data-conversation-id={conversationId}>
      <header className="conversation-header">
        <button type="button" className="back" onClick={onBack} data-testid="back-button" aria-label="Back to conversations">
          <span aria-hidden>‹</span>
          <span className="back-text">Back</span>
        </button>
        <div className="conversation-heading">
          <h2 id="conversation-title" data-testid="conversation-header-title">
            {peer && <PresenceDot user={peer} info={peerInfo} />}
            {title}
          </h2>
          <p className="subtitle" data-testid="conversation-subtitle">
            {peer
              ? peerInfo?.status === 'online'
                ? 'online'
                : formatLastSeen(peerInfo?.last_seen ?? null)
              : `${conv.members.length} member${conv.members.length === 1 ? '' : 's'}`}
          </p>
        </div>
        <button
          type="button"
          className="small"
          data-testid="members-toggle"
          aria-expanded={showMembers}
          aria-controls="members-panel"
          onClick={() => setShowMembers((v) => !v)}
        >
          {conv.kind === 'group' ? `Members (${conv.members.length})` : 'Details'}
        </button>
      </header>
      {showMembers && (
        <MembersPanel conversation={conv} state={state} conn={conn} onLeft={onBack} onClose={() => setShowMembers(false)} />
      )}
      <MessageList
        conversationId={conversationId}
        items={items}
        conn={conn}
        me={state.me}
        isGroup={conv.kind === 'group'}
        hasMore={historyBefore(state, conversationId) !== null}
      />
      <div className="typing-indicator" data-testid="typing-indicator" aria-live="polite" aria-atomic="true">
        {typingText(typing)}
      </div>
      <Composer conversationId={conversationId} conn={conn} />
    </section>
  );
}
