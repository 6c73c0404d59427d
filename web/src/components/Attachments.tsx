import { useEffect, useState } from 'react';
import '../media.css';
import { formatBytes, isImage, mediaUrl, placeholderColor } from '../media';
import type { Attachment } from '../protocol';

interface Props {
  conversationId: string;
  attachments: Attachment[];
  token: string;
}

/** A message's pictures (thumbnail over their placeholder colour; a click opens the full image)
 * and files (name, size; a click downloads). URLs are asked for when shown: they expire. */
export function Attachments({ conversationId, attachments, token }: Props) {
  const [open, setOpen] = useState<{ url: string; name: string } | null>(null);
  const [error, setError] = useState<string | null>(null);

  const show = async (a: Attachment) => {
    setError(null);
    try {
      const url = await mediaUrl(token, a.media_id, conversationId);
      if (isImage(a.type)) setOpen({ url, name: a.name });
      else globalThis.open?.(url, '_blank', 'noopener');
    } catch {
      setError('The file is not available.');
    }
  };

  return (
    <div className="attachments" data-testid="attachments">
      {attachments.map((a) =>
        isImage(a.type) && a.thumbnail ? (
          <Thumbnail key={a.media_id} a={a} conversationId={conversationId} token={token} onOpen={() => show(a)} />
        ) : (
          <button
            key={a.media_id}
            type="button"
            className="file-attachment"
            data-testid="file-attachment"
            onClick={() => show(a)}
          >
            <span className="file-name">{a.name}</span> <span className="file-size">{formatBytes(a.size)}</span>
          </button>
        ),
      )}
      {error && <span className="error">{error}</span>}
      {open && (
        <div className="lightbox" role="dialog" aria-label={open.name} onClick={() => setOpen(null)}>
          <img src={open.url} alt={open.name} data-testid="media-full" />
          <button type="button" className="link" onClick={() => setOpen(null)}>
            Close
          </button>
        </div>
      )}
    </div>
  );
}

function Thumbnail({
  a,
  conversationId,
  token,
  onOpen,
}: {
  a: Attachment;
  conversationId: string;
  token: string;
  onOpen: () => void;
}) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    mediaUrl(token, a.media_id, conversationId, 'thumb')
      .then((url) => live && setSrc(url))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [a.media_id, conversationId, token]);
  const ratio = a.width && a.height ? `${a.width} / ${a.height}` : undefined;
  return (
    <button
      type="button"
      className="thumbnail"
      data-testid="thumbnail"
      data-media-id={a.media_id}
      aria-label={`Open ${a.name}`}
      style={{ aspectRatio: ratio, background: placeholderColor(a.placeholder) }}
      onClick={onOpen}
    >
      {src && <img src={src} alt={a.name} data-testid="thumbnail-img" />}
    </button>
  );
}
