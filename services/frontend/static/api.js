// The only module that talks to the API gateway. The access token lives in this module's
// memory only (never Web Storage), so a reload or a closed tab ends the session.

const API_BASE = (window.CXR_CONFIG?.apiBaseUrl ?? "/api").replace(/\/+$/, "");

let accessToken = null;
let sessionExpiredHandler = () => {};

/** A failed request: the gateway's problem+json fields, or status 0 when the network failed. */
export class ApiError extends Error {
  constructor(status, problem = {}, { retryAfter = null, sessionExpired = false } = {}) {
    super(problem.detail || problem.title || `request failed with status ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = problem.code ?? "";
    this.retryAfter = retryAfter;
    this.sessionExpired = sessionExpired;
  }
}

/** Called once when the gateway rejects the current token (expired, revoked, user disabled). */
export function onSessionExpired(handler) {
  sessionExpiredHandler = handler;
}

export async function signIn(username, password) {
  const body = new URLSearchParams({ username, password });
  const response = await request("/auth/token", { method: "POST", body, authenticated: false });
  accessToken = (await response.json()).access_token;
}

export function signOut() {
  accessToken = null;
}

export async function getCurrentUser() {
  return (await request("/me")).json();
}

export async function classify(file) {
  const body = new FormData();
  body.append("file", file, file.name);
  return (await request("/classify", { method: "POST", body })).json();
}

export async function listResults({ limit, offset }) {
  const query = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  return (await request(`/results?${query}`)).json();
}

/** The image of a result as a Blob; `imagePath` is the result's image.url, relative to the API base. */
export async function fetchImage(imagePath) {
  return (await request(imagePath)).blob();
}

async function request(path, { method = "GET", body = undefined, authenticated = true } = {}) {
  const token = accessToken;
  if (authenticated && !token) {
    // Signed out while this request was being prepared: nothing to report to the user.
    throw new ApiError(401, { code: "not_authenticated" }, { sessionExpired: true });
  }
  const headers = authenticated ? { Authorization: `Bearer ${token}` } : {};
  let response;
  try {
    response = await fetch(API_BASE + path, { method, body, headers, cache: "no-store" });
  } catch {
    throw new ApiError(0, { code: "network_error" });
  }
  if (response.ok) return response;

  const sessionExpired = authenticated && response.status === 401;
  const error = new ApiError(response.status, await readProblem(response), {
    retryAfter: response.headers.get("Retry-After"),
    sessionExpired,
  });
  // Several requests may fail with the same stale token; only the first one reports it.
  if (sessionExpired && accessToken === token) {
    accessToken = null;
    sessionExpiredHandler();
  }
  throw error;
}

async function readProblem(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText }; // e.g. an HTML error page from a proxy
  }
}
