export function formatTime(ts: number): string {
  if (!ts) return '';
  const d = new Date(ts);
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return sameDay ? time : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

export function formatLastSeen(ts: number | null): string {
  if (!ts) return 'offline';
  return `last seen ${formatTime(ts)}`;
}

export function splitUsers(s: string): string[] {
  return [...new Set(s.split(/[\s,]+/).map((u) => u.trim()).filter(Boolean))];
}
