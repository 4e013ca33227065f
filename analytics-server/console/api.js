// The JSON API client: the token from session storage in the Authorization header, errors
// in the API's one shape turned into ApiError (status, code, message, field).

const KEY = 'analytics.token';
const BASE = '/api/v1/analytics/';

export function getToken() {
  return sessionStorage.getItem(KEY);
}
export function setToken(t) {
  sessionStorage.setItem(KEY, t);
}
export function clearToken() {
  sessionStorage.removeItem(KEY);
}

/** The token's claims (display only: the server checks every call). */
export function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
  } catch {
    return {};
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || null;
    this.field = body?.error?.field || null;
  }
}

/** Calls `path` under /api/v1/analytics/; `query` values that are null are left out. */
export async function api(path, { method = 'GET', query, body } = {}) {
  const url = new URL(BASE + path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== null && v !== undefined && v !== '') url.searchParams.set(k, v);
  }
  const headers = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(url, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401) window.dispatchEvent(new CustomEvent('unauthorized'));
    throw new ApiError(resp.status, data);
  }
  return data;
}
