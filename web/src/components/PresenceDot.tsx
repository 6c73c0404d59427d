import type { PresenceInfo } from '../protocol';
import { formatLastSeen } from '../format';

export function PresenceDot({ user, info }: { user: string; info: PresenceInfo | undefined }) {
  const status = info?.status ?? 'offline';
  const label = status === 'online' ? `${user} is online` : `${user} is ${formatLastSeen(info?.last_seen ?? null)}`;
  return (
    <span
      className={`presence-dot ${status}`}
      data-testid="presence-dot"
      data-status={status}
      data-user={user}
      role="img"
      aria-label={label}
      title={label}
    />
  );
}
