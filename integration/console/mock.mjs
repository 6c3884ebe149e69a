// A stand-in for fulcrum's HTTP control API, for working on the web console without the
// real binary: serves src/control/console.html at `/`, the JSON API under /api/v1/, and a
// tiny TCP "proxy" that spreads connections over fake nodes so the counters move.
//
//   node integration/console/mock.mjs [--port N] [--proxy-port N] [--token T | --read-only]
//
// Prints one JSON line {"console": URL, "proxy": ADDR, "token": T|null, "nodes": [...]} once
// listening. Loopback only. The HTML file is re-read on every request, so edits show on reload.
// Stops on SIGINT/SIGTERM.

import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const HTML = path.join(here, '..', '..', 'src', 'control', 'console.html');

const opts = { port: 0, proxyPort: 0, token: 'mock-token', readOnly: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--port') opts.port = Number(argv[++i]);
  else if (a === '--proxy-port') opts.proxyPort = Number(argv[++i]);
  else if (a === '--token') opts.token = argv[++i];
  else if (a === '--read-only') opts.readOnly = true;
  else { console.error(`mock: unknown argument ${a}`); process.exit(2); }
}
if (opts.readOnly) opts.token = null;

const started = Date.now();
const stats = { scheduler: 'rr', enabled: true, total: 0, refused_disabled: 0, no_node: 0 };
const node = (addr, weight, extra = {}) => ({
  addr, weight, effective_weight: weight, backup: false, maxconn: 0, admin: 'ready', removing: false, health: 'up',
  agent: null, active: 0, total: 0, bytes_in: 0, bytes_out: 0, connect_failures: 0,
  checkedAt: Date.now(), check: { ok: true, detail: 'connected', rtt_us: 180 }, ...extra,
});
const nodes = [
  node('127.0.0.1:9001', 1),
  node('127.0.0.1:9002', 2, { agent: 'up 75%', effective_weight: 1 }),
  node('127.0.0.1:9003', 1, { backup: true, health: 'down', check: { ok: false, detail: 'connection refused', rtt_us: null } }),
];

function nodeJson(n) {
  const { checkedAt, check, ...rest } = n;
  return { ...rest, last_check: check ? { ...check, age_ms: Date.now() - checkedAt } : null };
}
function statsJson() {
  const sum = (k) => nodes.reduce((s, n) => s + n[k], 0);
  return {
    uptime_s: Math.floor((Date.now() - started) / 1000), workers: 2, scheduler: stats.scheduler,
    enabled: stats.enabled, active: sum('active'), total: stats.total, bytes_in: sum('bytes_in'),
    bytes_out: sum('bytes_out'), refused_disabled: stats.refused_disabled, refused_maxconn: 0, refused_per_source: 0,
    no_node: stats.no_node, connect_failures: sum('connect_failures'), accept_errors: 0,
    ha_role: null, ha_epoch: null, ha_takeovers: null, ha_peer_last_ms: null, ha_rejected: null,
  };
}

// A subset of the control grammar (src/control/command.rs), with the real reply texts.
function command(line) {
  const t = line.trim().split(/\s+/);
  const find = (addr) => nodes.find((n) => n.addr === addr);
  if (t[0] === 'set' && t[1] === 'state' && t.length === 4) {
    if (!['ready', 'drain', 'maint'].includes(t[3])) return [400, `error: set state: bad state '${t[3]}' (want ready|drain|maint)`];
    const n = find(t[2]);
    if (!n) return [400, `error: no such node ${t[2]}`];
    const old = n.admin;
    n.admin = t[3];
    return [200, `node ${n.addr} state ${old} -> ${n.admin}`];
  }
  if (t[0] === 'set' && t[1] === 'weight' && t.length === 4) {
    const n = find(t[2]), w = Number(t[3]);
    if (!n) return [400, `error: no such node ${t[2]}`];
    if (!Number.isInteger(w) || w < 0 || w > 256) return [400, `error: set weight: bad weight '${t[3]}' (want 0..=256)`];
    const old = n.weight;
    n.weight = n.effective_weight = w;
    return [200, `node ${n.addr} weight ${old} -> ${w}`];
  }
  if (t[0] === 'set' && t[1] === 'scheduler' && t.length === 3 && ['rr', 'wrr', 'lc', 'wlc'].includes(t[2])) {
    stats.scheduler = t[2];
    return [200, `scheduler set to ${t[2]}`];
  }
  if (line.trim() === 'disable') { stats.enabled = false; return [200, 'distribution disabled']; }
  if (line.trim() === 'enable') { stats.enabled = true; return [200, 'distribution enabled']; }
  return [400, `error: unknown command '${t[0] ?? ''}' (the mock knows set state|weight|scheduler, enable, disable)`];
}

function send(res, code, type, body) {
  res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const json = (v) => send(res, 200, 'application/json', JSON.stringify(v));
  if (req.method === 'GET' && url.pathname === '/') {
    fs.readFile(HTML, (err, buf) => err ? send(res, 500, 'text/plain', String(err))
      : send(res, 200, 'text/html; charset=utf-8', buf));
  } else if (req.method === 'GET' && url.pathname === '/api/v1/nodes') json(nodes.map(nodeJson));
  else if (req.method === 'GET' && url.pathname === '/api/v1/stats') json(statsJson());
  else if (req.method === 'GET' && url.pathname === '/api/v1/console') json({ mutations: opts.token !== null });
  else if (req.method === 'POST' && url.pathname === '/api/v1/command') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; if (body.length > 4096) req.destroy(); });
    req.on('end', () => {
      const text = (code, msg) => send(res, code, 'text/plain; charset=utf-8', msg + '\n');
      if (opts.token === null) return text(403, 'error: the console is read-only (no --http-token-file)');
      const auth = req.headers.authorization ?? '';
      if (!auth.startsWith('Bearer ')) return text(401, 'error: missing bearer token');
      if (auth.slice(7) !== opts.token) return text(401, 'error: wrong token');
      const [code, msg] = command(body);
      text(code, msg);
    });
  } else send(res, 404, 'text/plain', 'error: not found\n');
});

// The fake proxy: each connection is counted against a node until it closes; bytes the
// client sends are echoed back and counted as in/out.
let rr = 0;
const proxy = net.createServer((sock) => {
  const eligible = nodes.filter((n) => n.admin === 'ready' && n.health !== 'down' && n.weight > 0);
  if (!stats.enabled || eligible.length === 0) {
    if (stats.enabled) stats.no_node++; else stats.refused_disabled++;
    sock.destroy();
    return;
  }
  const n = eligible[rr++ % eligible.length];
  n.active++; n.total++; stats.total++;
  sock.on('data', (d) => { n.bytes_in += d.length; n.bytes_out += d.length; sock.write(d); });
  sock.on('error', () => {});
  sock.on('close', () => { n.active--; });
});

// Some background traffic so the throughput columns are not all zero.
const tick = setInterval(() => {
  for (const n of nodes) {
    if (n.admin === 'ready' && n.health !== 'down') { n.bytes_in += 2000 + Math.floor(Math.random() * 3000); n.bytes_out += 50000 + Math.floor(Math.random() * 80000); }
    if (n.health !== 'down') n.checkedAt = Date.now() - Math.floor(Math.random() * 2000);
  }
}, 1000);

function stop() {
  clearInterval(tick);
  server.closeAllConnections?.();
  server.close();
  proxy.close();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

server.listen(opts.port, '127.0.0.1', () => {
  proxy.listen(opts.proxyPort, '127.0.0.1', () => {
    console.log(JSON.stringify({
      console: `http://127.0.0.1:${server.address().port}/`,
      proxy: `127.0.0.1:${proxy.address().port}`,
      token: opts.token,
      nodes: nodes.map((n) => n.addr),
    }));
  });
});
