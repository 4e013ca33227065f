// The console's shell: sign-in with a pasted token (session storage only), the pages the
// token's roles may see, hash routing (#/page?range=24h) and the unread notification count.

import { api, ApiError, claims, clearToken, getToken, setToken } from './api.js';
import { h } from './dom.js';
import { PAGES, TITLES } from './pages.js';

/** Pages per role (the server enforces the same rules; this only hides what would be 403). */
const ROLE_PAGES = {
  admin: ['overview', 'health', 'ml', 'business', 'alerts', 'notifications'],
  business_viewer: ['overview', 'business', 'notifications'],
};

const $ = (sel) => document.querySelector(sel);

function allowedPages() {
  const roles = claims(getToken() || '').roles || [];
  const pages = new Set();
  for (const r of roles) for (const p of ROLE_PAGES[r] || []) pages.add(p);
  pages.add('notifications');
  return ROLE_PAGES.admin.filter((p) => pages.has(p));
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const [name, qs] = raw.split('?');
  return { name: name || 'overview', params: new URLSearchParams(qs || '') };
}

export async function refreshUnread() {
  const badge = $('#unread');
  try {
    const page = await api('notifications', { query: { limit: 1 } });
    badge.textContent = String(page.unread);
    badge.setAttribute('aria-label', `${page.unread} unread notifications`);
    badge.classList.toggle('zero', page.unread === 0);
  } catch {
    badge.textContent = '?';
  }
}

let generation = 0;

async function route() {
  const token = getToken();
  const signin = $('#signin');
  const page = $('#page');
  const nav = $('#nav');
  const mine = ++generation;
  document.body.dataset.ready = '';
  if (!token) {
    signin.hidden = false;
    nav.hidden = true;
    $('#who').hidden = true;
    $('#signout').hidden = true;
    page.replaceChildren();
    document.title = 'Sign in · Analytics console';
    $('#token').focus();
    document.body.dataset.ready = 'signin';
    return;
  }
  signin.hidden = true;
  nav.hidden = false;
  $('#signout').hidden = false;
  const c = claims(token);
  const who = $('#who');
  who.hidden = false;
  who.textContent = `${c.sub || '?'} (${(c.roles || []).join(', ') || 'no role'})`;
  const allowed = allowedPages();
  const { name, params } = parseHash();
  if (!allowed.includes(name)) {
    window.location.replace(`#/${allowed[0]}`);
    return;
  }
  for (const a of nav.querySelectorAll('a')) {
    a.hidden = !allowed.includes(a.dataset.page);
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[name]} · Analytics console`;
  const body = h('div', { class: 'page', 'data-page': name });
  page.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  const ctx = { params, roles: c.roles || [], refreshUnread, rerender: route };
  try {
    await PAGES[name](body, ctx);
  } catch (err) {
    body.append(h('p', { class: 'error', role: 'alert' }, `Could not load this page: ${err.message}`));
  }
  if (mine !== generation) return;
  page.replaceChildren(body);
  document.body.dataset.ready = name;
  performance.mark(`ready:${name}`);
  refreshUnread();
}

function signIn(ev) {
  ev.preventDefault();
  const field = $('#token');
  const error = $('#token-error');
  const value = field.value.trim().replace(/^Bearer\s+/i, '');
  const fail = (msg) => {
    error.textContent = msg;
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  };
  if (!value) return fail('Paste a token.');
  setToken(value);
  api('notifications', { query: { limit: 1 } }).then(() => {
    error.textContent = '';
    field.removeAttribute('aria-invalid');
    field.value = '';
    if (!window.location.hash || window.location.hash === '#/') window.location.hash = '#/overview';
    else route();
  }).catch((err) => {
    clearToken();
    fail(err instanceof ApiError && err.status === 401
      ? `The server refused this token: ${err.message}`
      : `Sign-in failed: ${err.message}`);
  });
}

function signOut() {
  clearToken();
  window.location.hash = '';
  route();
}

window.addEventListener('hashchange', route);
// The unread count stays current between page changes.
setInterval(() => {
  if (getToken()) refreshUnread();
}, 60000);
window.addEventListener('unauthorized', () => {
  clearToken();
  route();
});
$('#signin-form').addEventListener('submit', signIn);
$('#signout').addEventListener('click', signOut);
route();
