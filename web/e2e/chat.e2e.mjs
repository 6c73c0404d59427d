#!/usr/bin/env node
/**
 * End-to-end test of the web client against a RUNNING stack (two edge nodes).
 *
 *   node web/e2e/chat.e2e.mjs
 *
 * Env: E2E_EDGE_A (default http://127.0.0.1:8080), E2E_EDGE_B (default http://127.0.0.1:8081),
 * CHROMIUM_PATH (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 15000 per wait).
 * Prints `ok - <name>` / `not ok - <name>` per step and `N passed, M failed`; exit code 0/1.
 * Screenshots go to <repo>/test-results/.
 */
import { mkdirSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const EDGE_A = (process.env.E2E_EDGE_A ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const EDGE_B = (process.env.E2E_EDGE_B ?? 'http://127.0.0.1:8081').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const T = Number(process.env.E2E_TIMEOUT_MS ?? 15_000);
const OUT = fileURLToPath(new URL('../../test-results/', import.meta.url));
mkdirSync(OUT, { recursive: true });

const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ALICE = `alice_${RUN}`;
const BOB = `bob_${RUN}`;
const MOD = `mod_${RUN}`;
const DM = `dm:${[ALICE, BOB].sort().join(':')}`;
const GROUP_TITLE = `Team ${RUN}`;

let passed = 0;
let failed = 0;
let blocked = null; // name of the failed step the remaining ones depend on

async function step(name, fn, { critical = true } = {}) {
  if (blocked) {
    failed++;
    console.log(`not ok - ${name} # skipped: depends on "${blocked}"`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok - ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}`);
    for (const line of String(e?.stack ?? e).split('\n').slice(0, 6)) console.log(`  # ${line}`);
    if (critical) blocked = name;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function shot(page, name) {
  await page.screenshot({ path: `${OUT}${name}.png` });
}

async function healthy(origin) {
  try {
    const r = await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(3000) });
    return r.ok;
  } catch {
    return false;
  }
}

// ------------------------------------------------------------------ page helpers
const tid = (page, id) => page.getByTestId(id);
const convItem = (page, id) => page.locator(`[data-testid="conversation-item"][data-conversation-id="${id}"]`);
const view = (page) => tid(page, 'conversation-view');
const bubbleWithText = (page, text) =>
  view(page).locator('[data-testid="message-bubble"]', { has: page.locator('[data-testid="message-body"]', { hasText: text }) });

async function signIn(page, origin, user, { moderator = false } = {}) {
  await page.goto(origin);
  await tid(page, 'signin-user').fill(user);
  if (moderator) await tid(page, 'signin-moderator').check();
  await tid(page, 'signin-submit').click();
  await tid(page, 'me').filter({ hasText: user }).waitFor({ timeout: T });
}

async function send(page, text) {
  const composer = tid(page, 'composer');
  await composer.click();
  await composer.fill(text);
  await composer.press('Enter');
  await bubbleWithText(page, text).first().waitFor({ timeout: T });
}

async function waitStatus(page, text, statuses) {
  const sel = statuses.map((s) => `[data-status="${s}"]`).join(', ');
  await bubbleWithText(page, text).and(page.locator(sel)).first().waitFor({ timeout: T });
}

/** A PNG of noise (incompressible: about 3 bytes a pixel), so that its upload takes long
 * enough for progress events; built here with zlib, no image library. */
function noisePng(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc((1 + 3 * width) * height);
  for (let i = 0; i < raw.length; i++) raw[i] = i % (1 + 3 * width) === 0 ? 0 : (Math.random() * 256) | 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 0 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function bodies(page) {
  return view(page).locator('[data-testid="message-body"]').allTextContents();
}

// Every WebSocket URL any page opened: the token must never be in one (#14, item 5).
const socketUrls = [];

async function newPage(context, errors, label) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${label}: ${e.message}`));
  page.on('websocket', (ws) => socketUrls.push(ws.url()));
  return page;
}

// ------------------------------------------------------------------ the run
async function main() {
  for (const origin of [EDGE_A, EDGE_B]) {
    if (!(await healthy(origin))) {
      console.log(`not ok - edge ${origin} answers /healthz`);
      console.log('0 passed, 1 failed');
      return 1;
    }
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const errors = [];
  try {
    const ctxA = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    const ctxB = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    const a = await newPage(ctxA, errors, 'alice');
    let b = await newPage(ctxB, errors, 'bob');

    await step('sign-in screen renders', async () => {
      await a.goto(EDGE_A);
      await tid(a, 'signin-user').waitFor({ timeout: T });
      assert(await a.getByLabel('User name').isVisible(), 'user name input has a label');
      await shot(a, '01-signin');
    });

    await step(`alice signs in on edge A (${EDGE_A})`, () => signIn(a, EDGE_A, ALICE));
    await step(`bob signs in on edge B (${EDGE_B})`, () => signIn(b, EDGE_B, BOB));

    await step('alice starts a direct chat with bob', async () => {
      await tid(a, 'new-chat-toggle').click();
      await tid(a, 'new-direct-input').fill(BOB);
      await tid(a, 'new-direct-submit').click();
      await view(a).and(a.locator(`[data-conversation-id="${DM}"]`)).waitFor({ timeout: T });
      await tid(a, 'conversation-header-title').filter({ hasText: BOB }).waitFor({ timeout: T });
    });

    await step('presence dot shows bob online', async () => {
      await view(a).locator(`[data-testid="presence-dot"][data-user="${BOB}"][data-status="online"]`).waitFor({ timeout: T });
      await convItem(a, DM).locator('[data-testid="presence-dot"][data-status="online"]').waitFor({ timeout: T });
    });

    await step('the new chat appears in bob\'s list', async () => {
      await convItem(b, DM).waitFor({ timeout: T });
    });

    await step('alice sends a message: pending → sent, then delivered to bob (not yet read)', async () => {
      await send(a, 'Hello bob');
      await waitStatus(a, 'Hello bob', ['sent', 'delivered', 'read']);
      await waitStatus(a, 'Hello bob', ['delivered']);
      const seq = await bubbleWithText(a, 'Hello bob').getAttribute('data-seq');
      assert(seq === '1', `first message has seq 1 (got ${seq})`);
    });

    await step('bob sees it live in his list with an unread badge', async () => {
      await convItem(b, DM).locator('[data-testid="conversation-preview"]', { hasText: 'Hello bob' }).waitFor({ timeout: T });
      await convItem(b, DM).locator('[data-testid="unread-badge"]', { hasText: '1' }).waitFor({ timeout: T });
      await shot(b, '02-conversation-list');
    });

    await step('bob opens the chat; alice\'s ticks turn to read', async () => {
      await convItem(b, DM).click();
      await bubbleWithText(b, 'Hello bob').waitFor({ timeout: T });
      await waitStatus(a, 'Hello bob', ['read']);
      await convItem(b, DM).locator('[data-testid="unread-badge"]').waitFor({ state: 'detached', timeout: T });
    });

    await step('a message reaches bob\'s open conversation live', async () => {
      await send(a, 'Are you there?');
      await bubbleWithText(b, 'Are you there?').waitFor({ timeout: T });
      await waitStatus(a, 'Are you there?', ['read']);
      await shot(a, '03-conversation');
    });

    await step('bob types and alice sees "typing…"', async () => {
      const composer = tid(b, 'composer');
      await composer.click();
      await composer.pressSequentially('I am typ', { delay: 30 });
      await tid(a, 'typing-indicator').filter({ hasText: `${BOB} is typing` }).waitFor({ timeout: T });
      await shot(a, '04-typing');
    });

    await step('typing stops when bob clears the composer', async () => {
      await tid(b, 'composer').fill('');
      await tid(a, 'typing-indicator').filter({ hasText: 'typing' }).waitFor({ state: 'detached', timeout: T });
    });

    await step('bob replies (Enter sends) and alice sees it', async () => {
      await tid(b, 'composer').pressSequentially('Hi alice', { delay: 10 });
      await tid(b, 'composer').press('Enter');
      await bubbleWithText(a, 'Hi alice').waitFor({ timeout: T });
      const sender = await bubbleWithText(a, 'Hi alice').getAttribute('data-sender');
      assert(sender === BOB, `sender is bob (got ${sender})`);
      await waitStatus(b, 'Hi alice', ['read']);
    });

    await step('alice attaches a picture: the upload shows its progress, then the message is sent', async () => {
      const picture = noisePng(1000, 800);
      // Every value the progress bar takes, recorded in the page (a fast upload shows it briefly).
      await a.evaluate(() => {
        window.__progress = [];
        new MutationObserver(() => {
          const bar = document.querySelector('[data-testid="upload-progress"]');
          if (bar) window.__progress.push(Number(bar.value));
        }).observe(document.body, { subtree: true, childList: true, attributes: true });
      });
      await tid(a, 'attach-input').setInputFiles({ name: 'noise.png', mimeType: 'image/png', buffer: picture });
      await tid(a, 'upload').and(a.locator('[data-state="ready"]')).waitFor({ timeout: T + 15_000 });
      const seen = await a.evaluate(() => window.__progress);
      assert(seen.length > 0, 'the progress bar was shown while uploading');
      await tid(a, 'composer').fill('Look at this');
      await tid(a, 'composer').press('Enter');
      await waitStatus(a, 'Look at this', ['sent', 'delivered', 'read']);
      await bubbleWithText(a, 'Look at this').locator('[data-testid="thumbnail"]').waitFor({ timeout: T });
    });

    await step('bob sees the thumbnail (its placeholder first) and opens the full image', async () => {
      const bubble = bubbleWithText(b, 'Look at this');
      const thumb = bubble.locator('[data-testid="thumbnail-img"]');
      await thumb.waitFor({ timeout: T });
      await b.waitForFunction(
        (el) => el.complete && el.naturalWidth > 0,
        await thumb.elementHandle(),
        { timeout: T },
      );
      const natural = await thumb.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
      assert(natural[0] === 320 && natural[1] === 256, `a 320 px thumbnail (got ${natural})`);
      await shot(b, '05a-picture');
      await bubble.locator('[data-testid="thumbnail"]').click();
      const full = tid(b, 'media-full');
      await full.waitFor({ timeout: T });
      await b.waitForFunction((el) => el.complete && el.naturalWidth > 0, await full.elementHandle(), { timeout: T });
      const size = await full.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
      assert(size[0] === 1000 && size[1] === 800, `the full image is 1000x800 (got ${size})`);
      await shot(b, '05b-full-image');
      await full.click();
      await full.waitFor({ state: 'detached', timeout: T });
    });

    await step('alice sees the "Disconnected — reconnecting…" banner while offline, and recovers', async () => {
      await ctxA.setOffline(true);
      await tid(a, 'banner-disconnected').waitFor({ timeout: T });
      await shot(a, '05-disconnected');
      await ctxA.setOffline(false);
      await tid(a, 'banner-disconnected').waitFor({ state: 'detached', timeout: T + 12_000 });
    });

    await step('bob goes offline (page closed); alice sees his presence change', async () => {
      await b.close();
      await view(a).locator(`[data-testid="presence-dot"][data-user="${BOB}"][data-status="offline"]`).waitFor({ timeout: T + 30_000 });
    });

    const offline = [1, 2, 3].map((i) => `While you were away #${i}`);
    await step('alice sends 3 messages while bob is offline; all are acknowledged', async () => {
      for (const text of offline) await send(a, text);
      for (const text of offline) await waitStatus(a, text, ['sent', 'delivered', 'read']);
    });

    await step('bob comes back (new page, same token) and sees all 3 exactly once, in order', async () => {
      b = await newPage(ctxB, errors, 'bob');
      await b.goto(EDGE_B);
      await tid(b, 'me').filter({ hasText: BOB }).waitFor({ timeout: T });
      await convItem(b, DM).locator('[data-testid="conversation-preview"]', { hasText: offline[2] }).waitFor({ timeout: T });
      await convItem(b, DM).click();
      for (const text of offline) await bubbleWithText(b, text).waitFor({ timeout: T });
      await bubbleWithText(b, 'Hello bob').waitFor({ timeout: T }); // older history paged in too
      const texts = await bodies(b);
      const idx = offline.map((t) => texts.indexOf(t));
      for (const [i, t] of offline.entries()) {
        assert(texts.filter((x) => x === t).length === 1, `"${t}" appears exactly once (${JSON.stringify(texts)})`);
        assert(idx[i] >= 0 && (i === 0 || idx[i] > idx[i - 1]), `in order: ${JSON.stringify(texts)}`);
      }
      const seqs = (await view(b).locator('[data-testid="message-bubble"]').evaluateAll((els) => els.map((e) => e.getAttribute('data-seq'))))
        .filter(Boolean)
        .map(Number);
      assert(new Set(seqs).size === seqs.length, `no duplicate seqs: ${seqs}`);
      assert(seqs.every((s, i) => i === 0 || s === seqs[i - 1] + 1), `contiguous ascending seqs: ${seqs}`);
      assert(seqs.length === 7 && seqs[0] === 1, `seqs 1..7: ${seqs}`); // 3 texts, a picture, 3 offline
    });

    await step('alice sees bob online again and her offline messages read', async () => {
      await view(a).locator(`[data-testid="presence-dot"][data-user="${BOB}"][data-status="online"]`).waitFor({ timeout: T });
      await waitStatus(a, offline[2], ['read']);
    });

    let groupId = null;
    await step('alice creates a group chat with a title; bob gets it', async () => {
      await tid(a, 'new-chat-toggle').click();
      await tid(a, 'new-group-title').fill(GROUP_TITLE);
      await tid(a, 'new-group-members').fill(BOB);
      await tid(a, 'new-group-submit').click();
      await tid(a, 'conversation-header-title').filter({ hasText: GROUP_TITLE }).waitFor({ timeout: T });
      groupId = await view(a).getAttribute('data-conversation-id');
      assert(/^grp:[0-9a-f]{32}$/.test(groupId ?? ''), `group id looks like grp:<hex> (${groupId})`);
      await convItem(b, groupId).locator('[data-testid="conversation-title"]', { hasText: GROUP_TITLE }).waitFor({ timeout: T });
    });

    await step('a group message reaches both members', async () => {
      await send(a, 'Welcome to the group');
      await convItem(b, groupId).click();
      await bubbleWithText(b, 'Welcome to the group').waitFor({ timeout: T });
      await send(b, 'Thanks!');
      await bubbleWithText(a, 'Thanks!').waitFor({ timeout: T });
      await waitStatus(a, 'Welcome to the group', ['read']);
      await tid(a, 'members-toggle').click();
      await tid(a, 'members-panel').locator(`[data-testid="member-item"][data-user="${BOB}"]`).waitFor({ timeout: T });
      await shot(a, '06-group');
    });

    // Moderation (#17): bob reports alice's message, a moderator redacts it from the queue, bob
    // sees the placeholder live, then the moderator restores it.
    const REPORTED = 'Are you there?';
    const NOTE = `note ${RUN}`;
    let reportedSeq = null;
    let m = null;
    const queueItem = () => tid(m, 'queue-item').and(m.locator(`[data-conversation-id="${DM}"][data-seq="${reportedSeq}"]`));
    await step('bob reports a message of alice\'s; the report is acknowledged', async () => {
      await convItem(b, DM).click();
      const bubble = bubbleWithText(b, REPORTED);
      reportedSeq = await bubble.getAttribute('data-seq');
      assert(reportedSeq, 'the reported message has a seq');
      await bubble.getByTestId('report-button').click();
      await bubble.getByTestId('report-reason-offensive').check();
      await bubble.getByTestId('report-note').fill(NOTE);
      await bubble.getByTestId('report-submit').click();
      await bubble.locator('[data-testid="report-status"][data-outcome="ok"]').waitFor({ timeout: T });
      await shot(b, '09-reported');
    });

    await step('a moderator (dev sign-in with the role) sees the report in the open queue, with the original message', async () => {
      const ctxM = await browser.newContext({ viewport: { width: 1100, height: 760 } });
      m = await newPage(ctxM, errors, 'moderator');
      await signIn(m, EDGE_A, MOD, { moderator: true });
      await tid(m, 'moderation-toggle').click();
      await tid(m, 'moderation-panel').waitFor({ timeout: T });
      // The queue has no live feed: the panel refetches it every few seconds.
      await queueItem().waitFor({ timeout: T });
      await queueItem().getByTestId('queue-message').filter({ hasText: REPORTED }).waitFor({ timeout: T });
      const report = queueItem().locator('[data-testid="queue-event"][data-kind="reported"]');
      const text = await report.textContent();
      assert(text.includes(BOB) && text.includes('offensive') && text.includes(NOTE), `report shown with reporter, reason and note: ${text}`);
      await shot(m, '10-moderation-queue');
    });

    await step('a plain user gets no moderation panel', async () => {
      assert((await tid(b, 'moderation-toggle').count()) === 0, 'bob has no moderation button');
    }, { critical: false });

    await step('the moderator redacts it; bob (the recipient) and alice see it as removed', async () => {
      // The reason starts as the report's: members see it on the placeholder.
      assert((await queueItem().getByTestId('queue-reason').inputValue()) === 'offensive', 'reason prefilled from the report');
      await queueItem().getByTestId('queue-redact').click();
      await queueItem().locator('[data-testid="queue-outcome"][data-outcome="ok"]').waitFor({ timeout: T });
      const hidden = (page) => view(page).locator(`[data-testid="message-bubble"][data-seq="${reportedSeq}"][data-redacted="true"]`);
      await hidden(b).getByTestId('message-redacted').filter({ hasText: 'removed by moderation (offensive)' }).waitFor({ timeout: T });
      assert((await bubbleWithText(b, REPORTED).count()) === 0, 'the body is gone from bob\'s view');
      await shot(b, '11-redacted');
      await convItem(a, DM).click();
      await hidden(a).waitFor({ timeout: T });
    });

    await step('the moderator restores it from the resolved tab; bob sees it again', async () => {
      await tid(m, 'queue-tab-resolved').click();
      await queueItem().getByTestId('queue-restore').click();
      await queueItem().locator('[data-testid="queue-outcome"][data-outcome="ok"]').waitFor({ timeout: T });
      await bubbleWithText(b, REPORTED).waitFor({ timeout: T });
      assert((await bubbleWithText(b, REPORTED).getAttribute('data-redacted')) === null, 'no longer marked redacted');
    }, { critical: false });

    await step('a message the rules block shows on alice\'s side as not sent, with the rule; bob never gets it', async () => {
      const term = `zorp${RUN}`;
      // The moderator's token is in its page; the rules are the deployment's, so put them back after.
      const policy = (method, body) =>
        m.evaluate(
          async ([method, body]) => {
            const r = await fetch('/v1/moderation/policy', {
              method,
              headers: { Authorization: `Bearer ${localStorage.getItem('chat.token')}`, 'Content-Type': 'application/json' },
              body: body ? JSON.stringify(body) : undefined,
            });
            if (!r.ok) throw new Error(`${method} policy: HTTP ${r.status}`);
            return r.json();
          },
          [method, body],
        );
      const { rules } = await policy('GET');
      const asPut = (terms) => ({ terms, domains: rules.domains, new_account_hours: rules.new_account_s / 3600 });
      await policy('PUT', asPut([...rules.terms, term]));
      try {
        await send(a, `hello ${term}`);
        const failure = bubbleWithText(a, `hello ${term}`).locator('[data-testid="send-failure"][data-code="blocked"]');
        await failure.filter({ hasText: 'Not sent' }).filter({ hasText: 'word the rules block' }).waitFor({ timeout: T });
        assert((await bubbleWithText(a, `hello ${term}`).getByTestId('retry-button').count()) === 0, 'no Retry for a blocked message');
        await shot(a, '12-blocked');
        // Delivery is in order: once the next message is at bob's, the blocked one would be too.
        await send(a, 'after the blocked one');
        await bubbleWithText(b, 'after the blocked one').waitFor({ timeout: T });
        assert((await bubbleWithText(b, term).count()) === 0, 'bob never got the blocked message');
      } finally {
        await policy('PUT', asPut(rules.terms));
        await m.context().close();
      }
    }, { critical: false });

    await step('narrow (375 px) layout shows list and conversation as separate panes', async () => {
      await b.setViewportSize({ width: 375, height: 740 });
      await tid(b, 'back-button').click();
      await tid(b, 'conversation-list').waitFor({ timeout: T });
      assert(!(await view(b).isVisible()), 'conversation pane hidden on the list screen');
      await shot(b, '07-mobile-list');
      await convItem(b, DM).click();
      await bubbleWithText(b, offline[0]).waitFor({ timeout: T });
      assert(!(await tid(b, 'conversation-list').isVisible()), 'list hidden on the conversation screen');
      await shot(b, '08-mobile-conversation');
    }, { critical: false });

    await step('every WebSocket opened with a one-time ticket, never the token', async () => {
      assert(socketUrls.length > 0, 'no WebSocket seen');
      for (const url of socketUrls) {
        const q = new URL(url).searchParams;
        assert(q.has('ticket') && !q.has('access_token'), `token in a WebSocket URL: ${url}`);
      }
    }, { critical: false });

    await step('a link with ?edges=<another host> sends nothing there', async () => {
      const ctx = await browser.newContext();
      const evil = [];
      const page = await newPage(ctx, errors, 'evil-link');
      const isEvil = (url) => new URL(url).hostname === 'evil.example';
      page.on('request', (r) => isEvil(r.url()) && evil.push(r.url()));
      page.on('websocket', (ws) => isEvil(ws.url()) && evil.push(ws.url()));
      await signIn(page, `${EDGE_A}/?edges=${encodeURIComponent('http://evil.example:9')}`, `eve_${RUN}`);
      await page.waitForTimeout(1500);
      assert(evil.length === 0, `contacted ${evil.join(', ')}`);
      const remembered = await page.evaluate(() => localStorage.getItem('chat.edges'));
      assert(!remembered, `remembered ${remembered}`);
      await ctx.close();
    }, { critical: false });

    await ctxA.close();
    await ctxB.close();
  } finally {
    await browser.close();
  }
  if (errors.length) {
    console.log('# page errors:');
    for (const e of errors) console.log(`#   ${e}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.log(`not ok - e2e harness: ${e?.stack ?? e}`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
  },
);
