import { conversationList, typingUsers, type ChatState } from '../protocol';
import { PresenceDot } from './PresenceDot';

interface Props {
  state: ChatState;
  selected: string | null;
  onSelect: (id: string) => void;
}

export function ConversationList({ state, selected, onSelect }: Props) {
  const items = conversationList(state);
  if (items.length === 0) {
    return (
      <p className="list-empty" data-testid="conversation-list-empty">
        No conversations yet. Start one with “New chat”.
      </p>
    );
  }
  return (
    <ul className="conversation-list" data-testid="conversation-list">
      {items.map((it) => {
        const typing = typingUsers(state, it.id, Date.now());
        const preview = it.preview === null ? (it.kind === 'group' ? 'New group' : 'No messages yet') : it.preview;
        const who = it.previewSender === state.me ? 'You: ' : it.kind === 'group' && it.previewSender ? `${it.previewSender}: ` : '';
        return (
          <li key={it.id}>
            <button
              type="button"
              className={`conversation-item ${it.id === selected ? 'selected' : ''} ${it.unread ? 'unread' : ''}`}
              data-testid="conversation-item"
              data-conversation-id={it.id}
              data-kind={it.kind}
              aria-current={it.id === selected ? 'true' : undefined}
              onClick={() => onSelect(it.id)}
            >
              <span className="avatar" aria-hidden>
                {it.kind === 'group' ? '#' : it.title.slice(0, 1).toUpperCase()}
              </span>
              {it.peer && <PresenceDot user={it.peer} info={state.presence[it.peer]} />}
              <span className="item-text">
                <span className="item-title" data-testid="conversation-title">
                  {it.title}
                </span>
                {typing.length > 0 ? (
                  <span className="item-preview typing" data-testid="conversation-typing">
                    {it.kind === 'group' ? `${typing[0]} is typing…` : 'typing…'}
                  </span>
                ) : (
                  <span className="item-preview" data-testid="conversation-preview">
                    {who}
                    {preview}
                  </span>
                )}
              </span>
              {it.unread > 0 && (
                <span className="badge" data-testid="unread-badge" aria-label={`${it.unread} unread`}>
                  {it.unread > 99 ? '99+' : it.unread}
                </span>
              )}
            </button>
          </li>
        );
      })}
    </ul>
  );
}
