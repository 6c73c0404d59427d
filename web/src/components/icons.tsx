/** Small inline SVG icons (no icon font or emoji: they render the same everywhere). */
import type { BubbleStatus } from '../protocol';

const common = { width: 16, height: 12, viewBox: '0 0 16 12', 'aria-hidden': true as const, focusable: false as const };

export function StatusIcon({ status }: { status: BubbleStatus }) {
  switch (status) {
    case 'pending':
      return (
        <svg width="12" height="12" viewBox="0 0 12 12" aria-hidden focusable={false}>
          <circle cx="6" cy="6" r="5" fill="none" stroke="currentColor" strokeWidth="1.3" />
          <path d="M6 3v3l2 1.5" fill="none" stroke="currentColor" strokeWidth="1.3" strokeLinecap="round" />
        </svg>
      );
    case 'failed':
      return (
        <svg width="12" height="12" viewBox="0 0 12 12" aria-hidden focusable={false}>
          <circle cx="6" cy="6" r="5.5" fill="currentColor" />
          <path d="M6 3v3.6M6 8.4v.2" stroke="#fff" strokeWidth="1.5" strokeLinecap="round" />
        </svg>
      );
    case 'sent':
      return (
        <svg {...common}>
          <path d="M2 6.5l3 3 6-7" fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" strokeLinejoin="round" />
        </svg>
      );
    case 'delivered':
    case 'read':
      return (
        <svg {...common}>
          <path d="M1 6.5l3 3 6-7" fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" strokeLinejoin="round" />
          <path d="M7.5 9.2l.3.3 6-7" fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" strokeLinejoin="round" />
        </svg>
      );
  }
}

export const STATUS_LABEL: Record<BubbleStatus, string> = {
  pending: 'Sending',
  failed: 'Not sent',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
};
