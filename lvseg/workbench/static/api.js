// The workbench's JSON API: the token (?token= in the page's URL) as a Bearer header, or the
// session cookie with the CSRF token that GET / put in <meta name="csrf-token">.
const token = new URLSearchParams(window.location.search).get('token');
const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const csrf = csrfMeta ? csrfMeta.content : '';

export class ApiError extends Error {}

export async function request(method, path, body) {
  const headers = token ? { Authorization: `Bearer ${token}` } : { 'X-CSRF-Token': csrf };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`the workbench does not answer (${method} ${path})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError((data && data.error) || `${method} ${path}: HTTP ${response.status}`);
  }
  return data;
}

// A URL the browser fetches by itself (an <img> src): no header, so the token goes in the query.
export function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

export const get = (path) => request('GET', path);
export const post = (path, body = {}) => request('POST', path, body);
export const remove = (path) => request('DELETE', path);

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : '';
}

export function cell(text) {
  const td = document.createElement('td');
  td.textContent = text === null || text === undefined ? '' : String(text);
  return td;
}
