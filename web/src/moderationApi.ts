/**
 * The moderators' REST API (docs/moderation.md, "Moderators"). The server checks the token's
 * `moderator` role on every call (403 otherwise); the client only decides whether to show the panel.
 */
import { request } from './api';
import { parseQueue, type MessageAction, type QueueItem, type QueueStatus, type UserAction } from './protocol';

export interface ModerationApi {
  queue(status: QueueStatus, limit?: number): Promise<QueueItem[]>;
  /** Redact, restore or dismiss a message; resolves to the action's id (the server answers 202). */
  message(conversationId: string, seq: number, action: MessageAction, reason?: string): Promise<string>;
  /** Mute (minutes required), ban (minutes optional: none is forever) or unban a user. */
  user(user: string, action: UserAction, minutes?: number): Promise<string>;
}

export const QUEUE_PAGE = 50;

export function createModerationApi(token: string, base = ''): ModerationApi {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  const post = async (path: string, body: object): Promise<string> => {
    const r = await request<{ action_id?: unknown }>(base, path, {
      method: 'POST',
      headers: { ...headers, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    return typeof r?.action_id === 'string' ? r.action_id : '';
  };
  return {
    async queue(status, limit = QUEUE_PAGE) {
      const p = new URLSearchParams({ status, limit: String(limit) });
      return parseQueue(await request<unknown>(base, `/v1/moderation/queue?${p}`, { headers }));
    },
    message(conversationId, seq, action, reason) {
      const path = `/v1/moderation/messages/${encodeURIComponent(conversationId)}/${seq}/${action}`;
      return post(path, reason ? { reason } : {});
    },
    user(user, action, minutes) {
      return post(`/v1/moderation/users/${encodeURIComponent(user)}/${action}`, minutes === undefined ? {} : { minutes });
    },
  };
}
