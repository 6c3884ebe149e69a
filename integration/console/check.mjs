// Real-browser check of fulcrum's web console: headless Debian Chromium driven by
// playwright-core (no browser download: executablePath is /usr/bin/chromium).
//
//   node integration/console/check.mjs CONSOLE_URL TOKEN PROXY_ADDR NODE_ADDR
//
// Loads the console, sees the node table, opens a few TCP connections through the
// distributor (held open) and waits for the table's active counts to rise, clicks "drain"
// on NODE_ADDR without a token and with a wrong one (refused, node stays ready), then with
// TOKEN (node shows drain). Env: CONSOLE_SCREENSHOT=PATH saves a PNG at the end (also on
// failure); CHROMIUM overrides the browser path. Exit 0 on success, 1 on a failed
// expectation, 2 on bad arguments. Loopback only; everything is bounded by TOTAL_MS.

import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const TOTAL_MS = 120_000;  // the whole run
const WAIT_MS = 15_000;    // one expectation
const LAUNCH_MS = 60_000;  // starting Chromium (slow on a loaded 2-core machine)
const CONNECTIONS = 4;     // held open through the proxy

function usage(msg) {
  console.error(`check.mjs: ${msg}\nusage: node check.mjs CONSOLE_URL TOKEN PROXY_ADDR NODE_ADDR`);
  process.exit(2);
}
const isLoopback = (h) => h === 'localhost' || h === '::1' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);
function splitAddr(a) {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(a) ?? /^([^:]+):(\d+)$/.exec(a);
  if (!m) usage(`not an IP:PORT address: ${a}`);
  return { host: m[1], port: Number(m[2]) };
}

const [consoleUrl, token, proxyAddr, nodeAddr] = process.argv.slice(2);
if (!nodeAddr) usage('four arguments needed');
let url;
try { url = new URL(consoleUrl); } catch { usage(`bad CONSOLE_URL: ${consoleUrl}`); }
if (!isLoopback(url.hostname)) usage(`CONSOLE_URL must be on loopback: ${consoleUrl}`);
if (!token) usage('empty TOKEN');
const proxy = splitAddr(proxyAddr);
if (!isLoopback(proxy.host)) usage(`PROXY_ADDR must be on loopback: ${proxyAddr}`);
const shot = process.env.CONSOLE_SCREENSHOT || null;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!fs.existsSync(executablePath)) usage(`no browser at ${executablePath} (apt-get install chromium)`);

class Failed extends Error {}
const sockets = [];
const browserLog = [];
let context = null, page = null, profile = null, exiting = false;

const log = (m) => console.log(`console check: ${m}`);
const rowSel = `tr[data-node="${nodeAddr}"]`;

async function cleanup() {
  for (const s of sockets) s.destroy();
  if (context) await Promise.race([context.close().catch(() => {}), sleep(5000)]);
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function finish(code, msg) {
  if (exiting) return;
  exiting = true;
  if (code !== 0) {
    console.error(`console check: FAILED: ${msg}`);
    if (page) {
      const dump = await Promise.race([
        page.evaluate(() => ({
          status: document.getElementById('status')?.textContent,
          conn: document.getElementById('conn')?.textContent,
          table: [...document.querySelectorAll('#nodes tbody tr')].map((tr) => tr.innerText.replace(/\s+/g, ' ')),
        })).catch((e) => ({ error: String(e) })),
        sleep(3000).then(() => ({ error: 'page did not answer' })),
      ]);
      console.error(`console check: page state: ${JSON.stringify(dump, null, 1)}`);
      if (shot) await Promise.race([page.screenshot({ path: shot, fullPage: true }).catch(() => {}), sleep(5000)]);
    }
    if (browserLog.length) console.error(`console check: browser log:\n  ${browserLog.join('\n  ')}`);
  } else {
    log(msg);
  }
  await cleanup();
  process.exit(code);
}

const overall = setTimeout(() => finish(1, `overall timeout of ${TOTAL_MS / 1000}s`), TOTAL_MS);

// Polls fn (in node) until it returns a truthy value; fails with what() after ms.
async function until(what, fn, ms = WAIT_MS) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(100);
  }
  throw new Failed(`${await what()} (waited ${ms / 1000}s)`);
}
const text = (sel) => page.locator(sel).first().textContent({ timeout: WAIT_MS }).then((t) => (t ?? '').trim());
const sumActive = () => page.$$eval('#nodes tbody tr td.active', (tds) => tds.reduce((s, td) => s + (Number(td.textContent) || 0), 0));
const status = () => page.$eval('#status', (s) => ({ seq: Number(s.dataset.seq), kind: s.dataset.kind, text: s.textContent }));

// Clicks an action button and returns the status line once this click's reply is shown.
async function click(action) {
  const before = (await status()).seq;
  await page.locator(`${rowSel} button[data-action="${action}"]`).click({ timeout: WAIT_MS });
  return until(() => `no reply shown for the ${action} click`, async () => {
    const s = await status();
    return s.seq > before && s.kind !== 'pending' ? s : null;
  });
}

function connect() {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: proxy.host.replace(/^\[|\]$/g, ''), port: proxy.port });
    sockets.push(s);
    s.setTimeout(WAIT_MS, () => reject(new Failed(`connect to ${proxyAddr} timed out`)));
    s.once('connect', () => { s.setTimeout(0); resolve(s); });
    s.once('error', (e) => reject(new Failed(`connect to ${proxyAddr}: ${e.message}`)));
    s.on('data', () => {});
  });
}

async function main() {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fulcrum-console-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
        viewport: { width: 1280, height: 800 },
    timeout: LAUNCH_MS,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] ?? await context.newPage();
  const pageErrors = [];
  page.on('console', (m) => browserLog.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => { pageErrors.push(e.message); browserLog.push(`pageerror: ${e.message}`); });

  const resp = await page.goto(consoleUrl, { timeout: WAIT_MS, waitUntil: 'load' });
  if (!resp || resp.status() !== 200) throw new Failed(`GET ${consoleUrl}: HTTP ${resp?.status()}`);
  const type = resp.headers()['content-type'] ?? '';
  if (!type.startsWith('text/html')) throw new Failed(`GET ${consoleUrl}: Content-Type ${type}, want text/html`);
  log(`loaded ${consoleUrl} (${await page.title()})`);

  await page.locator(rowSel).waitFor({ timeout: WAIT_MS }).catch(() => { throw new Failed(`no table row for ${nodeAddr}`); });
  const rowCount = await page.locator('#nodes tbody tr').count();
  const admin0 = await text(`${rowSel} td.admin`);
  if (admin0 !== 'ready') throw new Failed(`${nodeAddr} admin is '${admin0}' at start, want ready`);
  await until(() => 'mutations never enabled (GET /api/v1/console must say {"mutations":true})', async () => {
    if (await page.locator('#readonly-note').isVisible()) throw new Failed('the console says it is read-only (mutations=false): was --http-token-file given?');
    return page.locator(`${rowSel} button[data-action="drain"]`).isEnabled();
  });
  log(`node table shows ${rowCount} node(s); ${nodeAddr} is ready`);

  const base = await sumActive();
  for (let i = 0; i < CONNECTIONS; i++) await connect();
  const seen = await until(async () => `active connections in the table stayed at ${await sumActive()}, want >= ${base + CONNECTIONS}`,
    async () => { const n = await sumActive(); return n >= base + CONNECTIONS ? n : 0; });
  log(`opened ${CONNECTIONS} connections through ${proxyAddr}: table active ${base} -> ${seen}`);

  await page.fill('#token', '');
  let s = await click('drain');
  if (s.kind !== 'error' || !/\b401\b/.test(s.text)) throw new Failed(`drain without a token: status '${s.text}' (${s.kind}), want an HTTP 401 error`);
  log(`drain without a token refused: ${s.text}`);
  await page.fill('#token', `${token}-wrong`);
  s = await click('drain');
  if (s.kind !== 'error' || !/\b401\b/.test(s.text)) throw new Failed(`drain with a wrong token: status '${s.text}' (${s.kind}), want an HTTP 401 error`);
  log(`drain with a wrong token refused: ${s.text}`);
  await sleep(1500); // at least one refresh: the refused drains must not have applied
  const admin1 = await text(`${rowSel} td.admin`);
  if (admin1 !== 'ready') throw new Failed(`${nodeAddr} admin is '${admin1}' after refused drains, want ready`);

  await page.fill('#token', token);
  s = await click('drain');
  if (s.kind !== 'ok') throw new Failed(`drain with the token: status '${s.text}' (${s.kind}), want success`);
  log(`drain with the token accepted: ${s.text}`);
  await until(async () => `${nodeAddr} admin cell shows '${await text(`${rowSel} td.admin`)}', want drain`,
    async () => (await text(`${rowSel} td.admin`)) === 'drain');
  log(`${nodeAddr} shows admin state drain`);
  const kept = await page.evaluate(() => sessionStorage.getItem('fulcrum.token'));
  if (kept !== token) throw new Failed('the token was not kept in sessionStorage');
  const legend = await page.locator(`#legend li[data-node="${nodeAddr}"]`).count();
  if (legend !== 1) throw new Failed(`chart legend has no entry for ${nodeAddr}`);
  if (pageErrors.length) throw new Failed(`uncaught errors in the page: ${pageErrors.join('; ')}`);

  if (shot) {
    await page.screenshot({ path: shot, fullPage: true });
    log(`screenshot saved to ${shot}`);
  }
}

main().then(
  () => { clearTimeout(overall); return finish(0, 'all expectations met'); },
  (e) => { clearTimeout(overall); return finish(1, e instanceof Failed ? e.message : (e?.stack ?? String(e))); },
);
