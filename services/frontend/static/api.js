// The only module that talks to the API gateway. Tokens live in this module's memory only
// (never Web Storage), so a reload or a closed tab ends the session. An access token the
// gateway rejects is replaced once through the refresh token; when that fails too, the
// session has ended.

const API_BASE = (window.CXR_CONFIG?.apiBaseUrl ?? "/api").replace(/\/+$/, "");

let tokens = null; // { access, refresh }
let refreshing = null; // the refresh in flight, shared by every request that needs it
let sessionExpiredHandler = () => {};

/** A failed request: the gateway's problem+json fields, or status 0 when the network failed. */
export class ApiError extends Error {
  constructor(status, problem = {}, { retryAfter = null, sessionExpired = false } = {}) {
    super(problem.detail || problem.title || `request failed with status ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code ?? "";
    this.problem = problem; // e.g. an intended-use refusal's found, accepted, model, input_kind, refusals
    this.retryAfter = retryAfter;
    this.sessionExpired = sessionExpired;
  }
}

/** Called once when the session cannot go on (token and refresh token rejected, account disabled). */
export function onSessionExpired(handler) {
  sessionExpiredHandler = handler;
}

export async function signIn(username, password) {
  const body = new URLSearchParams({ username, password });
  tokens = readTokens(await (await send("/auth/token", { method: "POST", body })).json());
}

/** Ends the session here at once, and at the gateway (revoking both tokens) when it can be reached. */
export async function signOut() {
  const ending = tokens;
  tokens = null;
  if (!ending) return;
  const body = new URLSearchParams(ending.refresh ? { refresh_token: ending.refresh } : {});
  const headers = { Authorization: `Bearer ${ending.access}` };
  await send("/auth/logout", { method: "POST", body, headers }).catch(() => {}); // the tokens expire anyway
}

export async function getCurrentUser() {
  return (await request("/me")).json();
}

/** Changes the signed-in user's password; the gateway ends every other session and this one goes on with new tokens. */
export async function changePassword(currentPassword, newPassword) {
  const json = { current_password: currentPassword, new_password: newPassword };
  tokens = readTokens(await (await request("/me/password", { method: "POST", json })).json());
}

export async function classify(file) {
  return (await request("/classify", { method: "POST", body: fileForm(file) })).json();
}

/** A browser-viewable rendering of a file that is not classified or stored (DICOM as PNG). */
export async function previewUpload(file) {
  return (await request("/preview", { method: "POST", body: fileForm(file) })).blob();
}

/** A page of results; `filters` may hold label, model, since, until (ISO), sort, limit, offset. */
export async function listResults(filters) {
  return (await request(`/results?${query(filters)}`)).json();
}

/** A stored result's image as a browser can show it (DICOM rendered by the gateway). */
export async function fetchResultPreview(resultId) {
  return (await request(`/results/${encodeURIComponent(resultId)}/preview`)).blob();
}

/** Any other image the API serves (e.g. an explanation heatmap), by its path relative to the API base. */
export async function fetchImage(path) {
  return (await request(path)).blob();
}

/** The deployed models with what their cards state (intended use, population, metrics, known limits). */
export async function listModels() {
  return (await request("/models")).json();
}

export async function getModel(name) {
  return (await request(`/models/${encodeURIComponent(name)}`)).json();
}

export async function listUsers() {
  return (await request("/users")).json();
}

export async function createUser(user) {
  return (await request("/users", { method: "POST", json: user })).json();
}

export async function disableUser(userId) {
  return (await request(`/users/${encodeURIComponent(userId)}/disable`, { method: "POST" })).json();
}

export async function enableUser(userId) {
  return (await request(`/users/${encodeURIComponent(userId)}/enable`, { method: "POST" })).json();
}

/** Resets a user's password: `{ user, temporary_password }`, the generated password shown this once. */
export async function resetUserPassword(userId) {
  return (await request(`/users/${encodeURIComponent(userId)}/password`, { method: "POST" })).json();
}

export async function listClients() {
  return (await request("/clients")).json();
}

/** The new client with its secret, which the gateway shows this once. */
export async function createClient(name) {
  return (await request("/clients", { method: "POST", json: { name } })).json();
}

export async function disableClient(clientUuid) {
  return (await request(`/clients/${encodeURIComponent(clientUuid)}/disable`, { method: "POST" })).json();
}

/** A page of audit events; `filters` may hold actor, action, since, until (ISO), limit, offset. */
export async function listAuditEvents(filters) {
  return (await request(`/audit?${query(filters)}`)).json();
}

/** Saves a CSV export (`/results/export.csv` or `/audit/export.csv`) with these filters as a file. */
export async function downloadCsv(path, filters) {
  const response = await request(`${path}?${query(filters)}`);
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: named?.[1] ?? "export.csv" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function request(path, { method = "GET", body = undefined, json = undefined } = {}) {
  const headers = json === undefined ? {} : { "Content-Type": "application/json" };
  const payload = json === undefined ? body : JSON.stringify(json);
  for (let attempt = 0; ; attempt += 1) {
    const current = tokens;
    if (!current) {
      // Signed out while this request was being prepared: nothing to report to the user.
      throw new ApiError(401, { code: "not_authenticated" }, { sessionExpired: true });
    }
    try {
      return await send(path, { method, body: payload, headers: { ...headers, Authorization: `Bearer ${current.access}` } });
    } catch (error) {
      if (error.status !== 401) throw error;
      if (attempt === 0 && (await renewed(current))) continue;
      if (tokens === current) endSession();
      throw new ApiError(401, { code: error.code }, { sessionExpired: true });
    }
  }
}

/** Whether there are new tokens since `stale` was rejected (refreshed now or by another request). */
async function renewed(stale) {
  if (tokens !== stale) return tokens !== null;
  if (!stale.refresh) return false;
  refreshing ??= send("/auth/refresh", { method: "POST", body: new URLSearchParams({ refresh_token: stale.refresh }) })
    .then(async (response) => {
      if (tokens === stale) tokens = readTokens(await response.json());
      return true;
    })
    .catch(() => false)
    .finally(() => (refreshing = null));
  return (await refreshing) && tokens !== null;
}

function endSession() {
  tokens = null;
  sessionExpiredHandler();
}

/** One HTTP exchange; throws an ApiError for anything but a 2xx answer. */
async function send(path, { method, body, headers = {} }) {
  let response;
  try {
    response = await fetch(API_BASE + path, { method, body, headers, cache: "no-store" });
  } catch {
    throw new ApiError(0, { code: "network_error" });
  }
  if (response.ok) return response;
  throw new ApiError(response.status, await readProblem(response), { retryAfter: response.headers.get("Retry-After") });
}

function readTokens(answer) {
  return { access: answer.access_token, refresh: answer.refresh_token ?? null, idleTimeout: answer.idle_timeout ?? null };
}

/** Seconds without input after which this session is signed out (the gateway's SESSION_IDLE_MINUTES). */
export function idleTimeoutSeconds() {
  return tokens?.idleTimeout ?? null;
}

function fileForm(file) {
  const body = new FormData();
  body.append("file", file, file.name);
  return body;
}

/** A query string of the filters that have a value. */
function query(filters) {
  const present = Object.entries(filters).filter(([, value]) => value !== undefined && value !== null && value !== "");
  return new URLSearchParams(present.map(([key, value]) => [key, String(value)]));
}

async function readProblem(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText }; // e.g. an HTML error page from a proxy
  }
}
