/**
 * Pictures and files (docs/media.md): the bytes go straight to the object store with a
 * presigned POST policy; the edge only signs, and answers short-lived download URLs.
 */
import { ApiError, request } from './api';
import type { Attachment } from './protocol';

/** What `POST /v1/media` answers. */
export interface UploadGrant {
  media_id: string;
  upload: { url: string; fields: Record<string, string> };
  expires_at: number;
}

/** A media's state as the edge reports it. */
export interface MediaInfo {
  id: string;
  owner: string;
  status: 'pending' | 'verifying' | 'ready' | 'rejected' | 'expired' | 'deleted';
  name: string;
  type: string;
  size: number;
  width?: number;
  height?: number;
  thumbnail?: boolean;
  placeholder?: string;
  reason?: string;
}

/** Polling a verdict that did not come within the completion's wait: this often, this long. */
const POLL_MS = 500;
const POLL_FOR_MS = 30_000;

function auth(token: string): Record<string, string> {
  return { Authorization: `Bearer ${token}`, Accept: 'application/json' };
}

export function isImage(type: string): boolean {
  return type.startsWith('image/');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** The attachment a ready media becomes in `message.send`. */
export function toAttachment(m: MediaInfo): Attachment {
  const a: Attachment = { media_id: m.id, name: m.name, type: m.type, size: m.size };
  if (m.width) {
    a.width = m.width;
    a.height = m.height;
  }
  if (m.thumbnail) a.thumbnail = true;
  if (m.placeholder) a.placeholder = m.placeholder;
  return a;
}

/** The POST to the store, with upload progress (fetch has none): the policy's fields, then the file. */
export function postToStore(
  grant: UploadGrant,
  file: Blob,
  onProgress: (fraction: number) => void,
  xhr: XMLHttpRequest = new XMLHttpRequest(),
): Promise<void> {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(grant.upload.fields)) form.append(k, v);
    form.append('file', file);
    xhr.open('POST', grant.upload.url);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        // S3 answers XML: <Error><Code>EntityTooLarge</Code>...
        const code = /<Code>([^<]+)<\/Code>/.exec(xhr.responseText ?? '')?.[1] ?? `http_${xhr.status}`;
        reject(new ApiError(xhr.status, code, `the store refused the upload (${code})`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload failed (network)'));
    xhr.send(form);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Request, upload and complete a file; resolves with the attachment once the media processor
 * accepted it, rejects with the reason otherwise.
 */
export async function uploadFile(
  token: string,
  file: File,
  onProgress: (fraction: number) => void,
  base = '',
): Promise<Attachment> {
  const grant = await request<UploadGrant>(base, '/v1/media', {
    method: 'POST',
    headers: { ...auth(token), 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: file.name || 'file', size: file.size, type: file.type || 'application/octet-stream' }),
  });
  await postToStore(grant, file, onProgress);
  const path = `/v1/media/${grant.media_id}`;
  let { media } = await request<{ media: MediaInfo }>(base, `${path}/complete`, {
    method: 'POST',
    headers: auth(token),
  });
  const deadline = Date.now() + POLL_FOR_MS;
  while ((media.status === 'pending' || media.status === 'verifying') && Date.now() < deadline) {
    await sleep(POLL_MS);
    ({ media } = await request<{ media: MediaInfo }>(base, path, { headers: auth(token) }));
  }
  if (media.status !== 'ready') {
    throw new ApiError(422, media.status, media.reason ?? `the file was not accepted (${media.status})`);
  }
  return toAttachment(media);
}

/** A short-lived URL of the file (or its thumbnail), for a member of the conversation. */
export async function mediaUrl(
  token: string,
  mediaId: string,
  conversationId: string,
  variant?: 'thumb',
  base = '',
): Promise<string> {
  const q = new URLSearchParams({ conversation_id: conversationId });
  if (variant) q.set('variant', variant);
  const answer = await request<{ url?: string }>(base, `/v1/media/${mediaId}?${q}`, { headers: auth(token) });
  if (!answer.url) throw new ApiError(404, 'not_found', 'the file is not available');
  return answer.url;
}

const DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';

/**
 * The average colour of a blurhash (its DC component, characters 2-5: sRGB), as CSS: a flat
 * placeholder without decoding the whole hash.
 */
export function placeholderColor(blurhash: string | undefined): string | undefined {
  if (!blurhash || blurhash.length < 6) return undefined;
  let value = 0;
  for (const c of blurhash.slice(2, 6)) {
    const d = DIGITS.indexOf(c);
    if (d < 0) return undefined;
    value = value * 83 + d;
  }
  const hex = value.toString(16).padStart(6, '0');
  return `#${hex}`;
}
