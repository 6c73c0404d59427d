import { useId, useState, type FormEvent } from 'react';
import { describeError, type Connection } from '../connection';
import { MAX_REPORT_NOTE, REPORT_REASONS, reportError, type ReportReason } from '../protocol';

interface Props {
  conn: Connection;
  conversationId: string;
  seq: number;
}

/** Refusals a reporter can act on, in their words (others fall back to describeError). */
const REPORT_ERRORS: Record<string, string> = {
  rate_limited: 'Too many reports for now — try again later',
  not_found: 'That message no longer exists',
  not_member: 'You are no longer in this conversation',
};

type Outcome = { ok: true } | { ok: false; text: string };

/** The "Report" action of one message: a reason, an optional note, and the server's answer. */
export function ReportAction({ conn, conversationId, seq }: Props) {
  const id = useId();
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState<ReportReason>('spam');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const invalid = reportError(reason, note);
    if (invalid) return setOutcome({ ok: false, text: invalid });
    setBusy(true);
    setOutcome(null);
    try {
      await conn.report(conversationId, seq, reason, note.trim());
      setOutcome({ ok: true });
      setOpen(false);
      setNote('');
    } catch (err) {
      const code = (err as { code?: unknown })?.code;
      setOutcome({ ok: false, text: (typeof code === 'string' && REPORT_ERRORS[code]) || describeError(err) });
    } finally {
      setBusy(false);
    }
  };

  if (outcome?.ok) {
    return (
      <p className="report-status" role="status" data-testid="report-status" data-outcome="ok">
        Reported. A moderator will review it.
      </p>
    );
  }
  if (!open) {
    return (
      <button
        type="button"
        className="link report-toggle"
        data-testid="report-button"
        onClick={() => {
          setOpen(true);
          setOutcome(null);
        }}
      >
        Report
      </button>
    );
  }
  return (
    <form className="report-form" onSubmit={submit} aria-label="Report this message" data-testid="report-form">
      <fieldset disabled={busy}>
        <legend>Why are you reporting this message?</legend>
        {REPORT_REASONS.map((r) => (
          <label key={r.value} className="report-reason">
            <input
              type="radio"
              name={`${id}-reason`}
              value={r.value}
              data-testid={`report-reason-${r.value}`}
              checked={reason === r.value}
              autoFocus={reason === r.value}
              onChange={() => setReason(r.value)}
            />
            {r.label}
          </label>
        ))}
        <label htmlFor={`${id}-note`}>Note for the moderators (optional)</label>
        <textarea
          id={`${id}-note`}
          data-testid="report-note"
          rows={2}
          maxLength={MAX_REPORT_NOTE}
          value={note}
          onChange={(e) => setNote(e.target.value)}
        />
      </fieldset>
      {outcome && !outcome.ok && (
        <p className="error" role="alert" data-testid="report-status" data-outcome="error">
          {outcome.text}
        </p>
      )}
      <div className="row">
        <button type="submit" className="primary small" data-testid="report-submit" disabled={busy}>
          {busy ? 'Reporting…' : 'Send report'}
        </button>
        <button type="button" className="small" onClick={() => setOpen(false)} disabled={busy}>
          Cancel
        </button>
      </div>
    </form>
  );
}
