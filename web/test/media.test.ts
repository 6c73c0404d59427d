import { describe, expect, it } from 'vitest';
import { formatBytes, placeholderColor, postToStore, toAttachment, type UploadGrant } from '../src/media';
import { bubbles, frames, initialState, reduce, type Attachment } from '../src/protocol';

const PHOTO: Attachment = {
  media_id: 'm' + 'a'.repeat(32),
  name: 'cat.jpg',
  type: 'image/jpeg',
  size: 80_000,
  width: 1600,
  height: 1200,
  thumbnail: true,
  placeholder: 'LyHV9woffQof00WBfQWBxuj[fQj[',
};

describe('media', () => {
  it('message.send carries only the media ids', () => {
    expect(frames.send('c', 'm1', '', 'r1', [PHOTO])).toEqual({
      type: 'message.send',
      conversation_id: 'c',
      client_msg_id: 'm1',
      body: '',
      attachments: [{ media_id: PHOTO.media_id }],
      id: 'r1',
    });
    expect(frames.send('c', 'm1', 'hi')).not.toHaveProperty('attachments');
  });

  it('a pending message keeps its attachments through the ack', () => {
    let s = initialState('alice');
    s = reduce(s, { type: 'message.pending', conversation_id: 'c', client_msg_id: 'm1', body: '', now: 1, attachments: [PHOTO] });
    expect(bubbles(s, 'c')[0].attachments).toEqual([PHOTO]);
    s = reduce(s, { type: 'message.acked', conversation_id: 'c', client_msg_id: 'm1', seq: 1, ts: 2 });
    expect(s.messages.c[0].attachments).toEqual([PHOTO]);
    expect(bubbles(s, 'c')[0].attachments).toEqual([PHOTO]);
  });

  it('ready media become attachments; sizes and placeholders for display', () => {
    expect(
      toAttachment({ id: PHOTO.media_id, owner: 'alice', status: 'ready', name: 'cat.jpg', type: 'image/jpeg', size: 80_000, width: 1600, height: 1200, thumbnail: true, placeholder: PHOTO.placeholder }),
    ).toEqual(PHOTO);
    expect(toAttachment({ id: 'mx', owner: 'a', status: 'ready', name: 'n.txt', type: 'text/plain', size: 3, width: 0, height: 0 })).toEqual({
      media_id: 'mx',
      name: 'n.txt',
      type: 'text/plain',
      size: 3,
    });
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(2 * 1024 * 1024)).toBe('2.0 MB');
    expect(placeholderColor('L00000fQfQfQfQfQfQfQfQfQfQfQ')).toBe('#000000');
    expect(placeholderColor(PHOTO.placeholder)).toMatch(/^#[0-9a-f]{6}$/);
    expect(placeholderColor('bad')).toBeUndefined();
  });

  it('the store upload reports progress, and the store refusal by its code', async () => {
    const grant: UploadGrant = { media_id: 'm1', upload: { url: 'http://store/b', fields: { key: 'uploads/m1', policy: 'p' } }, expires_at: 0 };
    const fake = new FakeXhr();
    const seen: number[] = [];
    const done = postToStore(grant, new Blob(['x']), (f) => seen.push(f), fake as unknown as XMLHttpRequest);
    expect(fake.sent?.get('key')).toBe('uploads/m1');
    expect([...(fake.sent?.keys() ?? [])]).toEqual(['key', 'policy', 'file']); // the file comes last
    fake.upload.onprogress?.({ lengthComputable: true, loaded: 50, total: 100 } as ProgressEvent);
    fake.finish(204, '');
    await done;
    expect(seen).toEqual([0.5, 1]);

    const refused = new FakeXhr();
    const failing = postToStore(grant, new Blob(['x']), () => undefined, refused as unknown as XMLHttpRequest);
    refused.finish(400, '<Error><Code>EntityTooLarge</Code></Error>');
    await expect(failing).rejects.toMatchObject({ status: 400, code: 'EntityTooLarge' });
  });
});

class FakeXhr {
  status = 0;
  responseText = '';
  sent: FormData | null = null;
  upload: { onprogress: ((e: ProgressEvent) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;
  open() {}
  send(form: FormData) {
    this.sent = form;
  }
  finish(status: number, text: string) {
    this.status = status;
    this.responseText = text;
    this.onload?.();
  }
}
