// api.js — a small fetch wrapper for the HTTP API, plus token storage and formatting helpers.
//
// Every endpoint speaks JSON. Errors come back as {"error": {"code", "message"}} with an
// HTTP status; `api()` turns them into an ApiError so callers can switch on `err.code`.

/** An error answer from the server (or the network), with the server's stable code. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status; // HTTP status, 0 when the request never got an answer
    this.code = code; // e.g. "insufficient_coins"; see errors.js
    this.retryAfterS = retryAfterS; // from the Retry-After header of a 429
    this.details = details; // the whole error object: some carry numbers (cost, balance…)
  }
}

// Tokens live in sessionStorage, one per role, so each browser tab can be a different demo
// user (a viewer in one tab, the creator in another) and a reload keeps you signed in.
const tokenKey = (role) => `gifting.token.${role}`;
export const getToken = (role) => sessionStorage.getItem(tokenKey(role));
export const setToken = (role, token) => sessionStorage.setItem(tokenKey(role), token);
export const clearToken = (role) => sessionStorage.removeItem(tokenKey(role));

/**
 * Call the API. `token` is a bearer JWT (or null for public endpoints).
 * Resolves with the parsed JSON body; rejects with an ApiError.
 */
export async function api(path, { method = "GET", body, token = null } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network_error", "The server cannot be reached.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page, for instance): fall through to the status check.
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    const retry = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(response.status, error.code ?? `http_${response.status}`, error.message ?? response.statusText, retry, error);
  }
  return data;
}

/**
 * Demo mode only: get a token for any user id (`POST /v1/dev/token`). A real app gets its
 * token from its own identity provider instead; everything else stays the same.
 */
export async function demoSignIn(role, userId, name = null) {
  const body = { user_id: userId, role };
  if (name) body.name = name;
  const { token } = await api("/v1/dev/token", { method: "POST", body });
  setToken(role, token);
  return token;
}

/**
 * A fresh idempotency key: one per tap, so that resending the same frame after a dropped
 * connection can never charge twice. (crypto.randomUUID needs a secure context;
 * getRandomValues works everywhere.)
 */
export function newIdempotencyKey(prefix = "tap") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** ws:// or wss:// URL on the page's own host. */
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

const integer = new Intl.NumberFormat("en-US");
export const formatNumber = (n) => integer.format(n);

/** Minor units (cents, pence; yen have none) as money: 999, "USD" → "$9.99". */
export function formatMoney(amountMinor, currency) {
  const format = new Intl.NumberFormat("en-US", { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(amountMinor / 10 ** digits);
}

/** Shorthand for document.querySelector with a data-testid, which the pages use as ids. */
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

/** Show or hide an element (the `hidden` attribute, styled in common.css). */
export function show(element, visible = true) {
  element.hidden = !visible;
}
