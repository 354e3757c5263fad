/**
 * `/`: the sign-in page, until the web dashboard (docs/api.md) takes this
 * place. It turns a one-time login link (`#login=drl_...`, the fragment
 * never reaches a server log) or a user name and password into a session
 * cookie, then shows who is signed in and the VMs it may see, through the
 * same API calls as every other client. No inline script: the page is
 * served with a Content-Security-Policy of 'self'.
 */
import type { FastifyInstance } from 'fastify';
import { open } from '../route-options.js';

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>drover</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/signin.css"></head>
<body><main>
<h1>drover</h1>
<p id="status" role="status">Checking your session…</p>
<form id="login" hidden>
  <label>User <input name="user" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<section id="who" hidden>
  <table><thead><tr><th>Name</th><th>Status</th><th>Host</th><th>Owner</th></tr></thead><tbody id="vms"></tbody></table>
  <p class="hint">The API: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (docs/api.md in the repository).</p>
  <button id="logout" type="button">Sign out</button>
</section>
</main><script type="module" src="/signin.js"></script></body></html>`;

const CSS = `body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:44rem;margin:3rem auto;background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 3px #0002}
h1{margin-top:0;font-size:1.6rem}label{display:block;margin:.6rem 0}input{display:block;width:100%;padding:.45rem;font:inherit;box-sizing:border-box}
button{margin-top:.8rem;padding:.45rem 1.1rem;font:inherit;border:0;border-radius:4px;background:#2456c7;color:#fff;cursor:pointer}
table{width:100%;border-collapse:collapse;margin:1rem 0}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e5ea}
.hint{color:#5a6272;font-size:.9rem}.error{color:#b3261e}`;

const SCRIPT = `const $ = (id) => document.getElementById(id);
let csrf = '';
async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrf && method !== 'GET') headers['X-CSRF-Token'] = csrf;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function say(text, error) { $('status').textContent = text; $('status').className = error ? 'error' : ''; }
async function show() {
  const me = await call('GET', '/api/v1/session');
  csrf = me.csrf_token || csrf;
  say('Signed in as ' + me.user + ' (' + me.role + ').');
  $('login').hidden = true; $('who').hidden = false;
  const { items } = await call('GET', '/api/v1/vms?limit=100');
  const rows = $('vms'); rows.replaceChildren();
  for (const vm of items) {
    const tr = document.createElement('tr');
    for (const v of [vm.name, vm.status, vm.host || 'not placed yet', vm.owner]) { const td = document.createElement('td'); td.textContent = v ?? ''; tr.append(td); }
    rows.append(tr);
  }
  if (items.length === 0) { const tr = document.createElement('tr'); const td = document.createElement('td'); td.colSpan = 4; td.textContent = 'No VMs yet.'; tr.append(td); rows.append(tr); }
}
async function start() {
  const m = /^#login=(drl_[A-Za-z0-9_-]+)$/.exec(location.hash);
  if (m) {
    history.replaceState(null, '', location.pathname);
    try { csrf = (await call('POST', '/api/v1/login', { token: m[1] })).csrf_token; }
    catch (e) { say('This login link is not valid any more (it works once): ' + e.message, true); $('login').hidden = false; return; }
  }
  try { await show(); } catch { say('Sign in with your drover user name and password.'); $('login').hidden = false; }
}
$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try { csrf = (await call('POST', '/api/v1/login', { user: f.get('user'), password: f.get('password') })).csrf_token; await show(); }
  catch (e) { say(e.message, true); }
});
$('logout').addEventListener('click', async () => { await call('POST', '/api/v1/logout').catch(() => {}); csrf = ''; $('who').hidden = true; $('login').hidden = false; say('Signed out.'); });
start();`;

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export function registerRootPage(app: FastifyInstance): void {
  const doc = { ...open({ summary: 'The sign-in page', tags: ['web'] }), schema: { hide: true } };
  const serve = (type: string, body: string) => async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply.header('Content-Security-Policy', CSP).header('X-Content-Type-Options', 'nosniff').header('Cache-Control', 'no-cache').type(type).send(body);
  app.get('/', doc, serve('text/html; charset=utf-8', PAGE));
  app.get('/signin.js', doc, serve('text/javascript; charset=utf-8', SCRIPT));
  app.get('/signin.css', doc, serve('text/css; charset=utf-8', CSS));
}
