// creator.js — the creator dashboard: go LIVE, set the goal, end the LIVE (with a confirm and
// then its summary), the money (the terms the server states, earnings, the per-gift history,
// withdrawals), the OBS overlay link (masked, copied with the chosen overlay options, revealed
// only on request, regenerated after a confirm) and its test alert; chat settings,
// moderators, bans, the moderation log and the follower count.
//
// Errors and notices are toasts (toast.js): they float over the page, so nothing under a
// finger moves when one appears.

import { api, byTestId, clearToken, demoSignIn, formatMoney, formatNumber, getToken, newIdempotencyKey, show } from "./api.js";
import { BattlePanel } from "./battles.js";
import { describeError } from "./errors.js";
import { clearToasts, toast } from "./toast.js";
import { VideosSection } from "./videos.js";

const ROLE = "creator";
const REFRESH_MS = 3000;
// Gifts per page of the earnings history; `?page_size=N` on the page's URL changes it.
const PAGE_SIZE = clampInt(new URLSearchParams(location.search).get("page_size"), 20, 1, 200);
const MASK = "••••••••";
// The overlay's own defaults (overlay.js): a parameter at its default stays out of the link.
const OVERLAY_DEFAULTS = { position: "top", scale: "1", min_coins: "1", widgets: "alerts,combos,top,goal" };

const state = {
  token: null,
  me: null,
  overlay: null,
  revealed: false,
  roomId: null,
  lastRoomId: null,
  timer: null,
  logCursor: null,
  terms: null,
  earnings: null,
  ledger: { cursor: null, shown: 0, signature: null, loading: false, again: false },
  battles: null, // the Battle section (battles.js)
};

function clampInt(raw, fallback, low, high) {
  const value = Number.parseInt(raw ?? "", 10);
  return Number.isInteger(value) && value >= low && value <= high ? value : fallback;
}

// ---------------------------------------------------------------- signing in (demo mode)

async function start() {
  wire();
  state.battles = new BattlePanel();
  state.token = getToken(ROLE);
  if (state.token) {
    try {
      return await signedIn(await api("/v1/me", { token: state.token }));
    } catch {
      clearToken(ROLE);
    }
  }
  show(byTestId("sign-in"));
}

async function signIn(userId) {
  try {
    state.token = await demoSignIn(ROLE, userId);
    await signedIn(await api("/v1/me", { token: state.token }));
  } catch (error) {
    showError(error);
  }
}

async function signedIn(me) {
  state.me = me;
  byTestId("user-name").textContent = me.name;
  show(byTestId("sign-in"), false);
  show(byTestId("account"));
  show(byTestId("dashboard"));
  // Created on first call; the same token until the creator regenerates it.
  showOverlay(await api("/v1/creator/overlay", { token: state.token }));
  await Promise.all([refresh(), loadChatSettings(), loadModerators(), videos.signedIn(state.token, me.user_id)]);
  // The last LIVE's summary is for between LIVEs.
  if (!state.roomId) await loadLastSummary();
  state.timer = setInterval(() => document.visibilityState === "visible" && refresh(), REFRESH_MS);
  state.battles.start(state.token, me);
}

function signOut() {
  clearInterval(state.timer);
  state.battles.stop();
  clearToken(ROLE);
  clearToasts();
  // Nothing of this creator stays for the next one: the summary, the history, a revealed link.
  Object.assign(state, { me: null, overlay: null, revealed: false, roomId: null, lastRoomId: null, terms: null, earnings: null });
  state.ledger = { cursor: null, shown: 0, signature: null, loading: false, again: false };
  show(byTestId("live-summary"), false);
  videos.signedOut();
  byTestId("ledger-rows").replaceChildren();
  byTestId("overlay-url").textContent = "";
  show(byTestId("dashboard"), false);
  show(byTestId("account"), false);
  show(byTestId("sign-in"));
}

async function refresh() {
  if (!state.overlay) return; // signed out meanwhile
  try {
    await Promise.all([refreshLive(), refreshEarnings(), refreshWithdrawals(), refreshFollowers(), videos.refresh()]);
  } catch (error) {
    if (error.code === "unauthorized") signOut();
    showError(error);
  }
}

// ---------------------------------------------------------------- the LIVE

async function refreshLive() {
  // The overlay endpoint answers "which room is this creator live in" in one call.
  const { room_id: roomId } = await api(`/v1/overlay/${encodeURIComponent(state.overlay.token)}`);
  state.roomId = roomId;
  if (roomId) state.lastRoomId = roomId;
  const liveState = byTestId("live-state");
  liveState.dataset.live = String(Boolean(roomId));
  show(byTestId("offline-controls"), !roomId);
  show(byTestId("live-controls"), Boolean(roomId));
  if (roomId) show(byTestId("live-summary"), false);
  if (!roomId) {
    liveState.textContent = "Offline";
    return;
  }
  const room = await api(`/v1/rooms/${encodeURIComponent(roomId)}`);
  liveState.textContent = `LIVE: ${room.title}`;
  byTestId("live-viewers").textContent = formatNumber(room.snapshot.viewers);
  byTestId("live-coins").textContent = formatNumber(room.snapshot.goal.progress);
  const goalInput = byTestId("goal-input");
  if (document.activeElement !== goalInput && room.snapshot.goal.target !== null) goalInput.value = room.snapshot.goal.target;
}

async function goLive() {
  await act(async () => {
    const title = byTestId("live-title").value.trim();
    await api("/v1/rooms", { method: "POST", body: title ? { title } : {}, token: state.token });
  });
}

/** The confirm dialog's answer decides: "Keep LIVE" changes nothing. */
function askToEndLive() {
  if (!state.roomId) return;
  byTestId("end-dialog").showModal();
}

async function endLive() {
  const roomId = state.roomId;
  if (!roomId) return;
  await act(async () => {
    const ended = await api(`/v1/rooms/${encodeURIComponent(roomId)}/end`, { method: "POST", token: state.token });
    remember(roomId);
    if (ended.summary) showSummary(ended.summary);
    toast("Your LIVE has ended.", { kind: "ok", key: "live" });
  });
}

// The dashboard remembers the id of the creator's last ended LIVE (per creator, in this
// browser), so its summary can be shown again after a reload.
const lastLiveKey = () => `gifting.lastLive.${state.me.user_id}`;

function remember(roomId) {
  try {
    localStorage.setItem(lastLiveKey(), roomId);
  } catch {
    // Storage can be off (private mode): the summary still shows until the next reload.
  }
}

async function loadLastSummary() {
  let roomId = null;
  try {
    roomId = localStorage.getItem(lastLiveKey());
  } catch {
    return;
  }
  if (!roomId) return;
  try {
    const summary = await api(`/v1/rooms/${encodeURIComponent(roomId)}/summary`, { token: state.token });
    if (summary.ended_ms !== null) showSummary(summary);
  } catch {
    // The room is gone (or was never this creator's): forget it.
    localStorage.removeItem(lastLiveKey());
  }
}

function showSummary(summary) {
  byTestId("summary-title").textContent = summary.title;
  byTestId("summary-duration").textContent = formatDuration(summary.duration_ms / 1000, true);
  setFigure("summary-coins", summary.coins, "coins");
  setFigure("summary-diamonds", summary.diamonds, "diamonds");
  byTestId("summary-value").textContent = state.terms ? diamondsCash(summary.diamonds) : "";
  setFigure("summary-gifts", summary.gifts, "gifts");
  setFigure("summary-gifters", summary.gifters, "gifters");
  setFigure("summary-likes", summary.likes, "likes");
  const hasFollowers = typeof summary.new_followers === "number";
  show(byTestId("summary-followers-box"), hasFollowers);
  if (hasFollowers) setFigure("summary-followers", summary.new_followers, "followers");
  const top = summary.top_gifters ?? [];
  const items = top.map((gifter) => {
    const item = document.createElement("li");
    item.dataset.testid = "summary-gifter";
    item.dataset.userId = gifter.user_id;
    item.append(
      span("person-name", gifter.name),
      span("hint", `${formatNumber(gifter.coins)} coins`, "summary-gifter-coins"),
    );
    return item;
  });
  fillList(byTestId("summary-top-gifters"), items, "No gifts in this LIVE.");
  show(byTestId("live-summary"));
}

function setFigure(testId, value, unit) {
  const element = byTestId(testId);
  element.textContent = formatNumber(value);
  element.dataset[unit] = value;
}

async function setGoal(coins) {
  await act(() => api(`/v1/rooms/${encodeURIComponent(state.roomId)}/goal`, { method: "PUT", body: { coins }, token: state.token }));
}

/** Run an action, show its error if any, then refresh what is on screen. */
async function act(action) {
  try {
    await action();
    clearToasts("error");
  } catch (error) {
    showError(error);
  }
  await refresh();
}

// ---------------------------------------------------------------- money

/** Cash for diamonds, as the server computes it: the value in minor units, rounded down. */
function diamondsCash(diamonds) {
  const { diamond_value_millicents: rate, currency } = state.terms;
  return formatMoney(Math.floor((diamonds * rate) / 1000), currency);
}

/** A price that can be below a cent: 500 millicents → "$0.005". */
function formatMillicents(millicents, currency) {
  const format = new Intl.NumberFormat("en-US", { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  const precise = new Intl.NumberFormat("en-US", { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits + 3 });
  return precise.format(millicents / 1000 / 10 ** digits);
}

/** Seconds as people say them: 604800 → "7 days", 3600 → "1 hour", 90 → "1 min 30 s". */
function formatDuration(seconds, short = false) {
  if (seconds > 0 && seconds < 1) return "less than a second";
  const s = Math.max(0, Math.round(seconds));
  const plural = (n, word) => `${formatNumber(n)} ${word}${n === 1 ? "" : "s"}`;
  if (!short) {
    if (s % 86400 === 0 && s > 0) return plural(s / 86400, "day");
    if (s % 3600 === 0 && s > 0) return plural(s / 3600, "hour");
    if (s % 60 === 0 && s > 0) return plural(s / 60, "minute");
    return plural(s, "second");
  }
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (hours > 0) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  if (minutes > 0) return `${minutes} min ${String(rest).padStart(2, "0")} s`;
  return `${rest} s`;
}

/** The terms as the server states them (GET /v1/creator/earnings `terms`). */
function showTerms(terms) {
  state.terms = terms;
  const share = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 }).format(terms.share_percent);
  const cash = (minor) => formatMoney(minor, terms.currency);
  const minimum = `${formatNumber(terms.min_withdrawal_diamonds)} diamonds (${cash(terms.min_withdrawal_minor)})`;
  byTestId("terms-share").textContent = `You earn ${share} % of the coins of every gift as diamonds.`;
  byTestId("terms-value").textContent = `1 diamond = ${formatMillicents(terms.diamond_value_millicents, terms.currency)}, so 10,000 diamonds = ${diamondsCash(10000)}.`;
  byTestId("terms-hold").textContent = `New diamonds are held ${formatDuration(terms.hold_s)} before you can withdraw them (a payment can still be refunded in that time).`;
  byTestId("terms-minimum").textContent = `The minimum withdrawal is ${minimum}.`;
  byTestId("terms-cap").textContent = `You can withdraw up to ${cash(terms.daily_payout_cap_minor)} a day.`;
  byTestId("withdraw-minimum").textContent = `Minimum ${minimum}.`;
  const input = byTestId("withdraw-input");
  input.placeholder = `${formatNumber(terms.min_withdrawal_diamonds)}+`;
}

async function refreshEarnings() {
  const earnings = await api("/v1/creator/earnings", { token: state.token });
  state.earnings = earnings;
  if (earnings.terms) showTerms(earnings.terms);
  for (const field of ["pending", "available", "reserved", "withdrawn", "lifetime"]) {
    byTestId(field).textContent = formatNumber(earnings[field]);
    byTestId(field).dataset.diamonds = earnings[field];
  }
  // The server computes cash values (exact integer arithmetic); the page only formats them.
  byTestId("pending-value").textContent = formatMoney(earnings.pending_value_minor, earnings.currency);
  byTestId("available-value").textContent = formatMoney(earnings.diamond_value_minor, earnings.currency);
  // The history is read again only when the books changed (a gift, a release, a reversal).
  const signature = ["pending", "available", "reserved", "withdrawn", "lifetime", "reversed"].map((field) => earnings[field]).join(":");
  if (signature !== state.ledger.signature) {
    state.ledger.signature = signature;
    await loadLedger(false);
  }
}

const isGift = (entry) => entry.kind === "gift";

/**
 * The per-gift history, newest first. `more` reads the next page; otherwise the pages shown
 * so far are read again from the top (states change as holds are released).
 */
async function loadLedger(more) {
  const ledger = state.ledger;
  if (ledger.loading) {
    // A reload asked for while a page is read runs right after it, never lost.
    if (!more) ledger.again = true;
    return;
  }
  ledger.loading = true;
  byTestId("ledger-more").disabled = true;
  try {
    const limit = more ? PAGE_SIZE : Math.min(200, Math.max(PAGE_SIZE, ledger.shown));
    const query = new URLSearchParams({ limit: String(limit) });
    if (more && ledger.cursor) query.set("cursor", ledger.cursor);
    const { entries, next_cursor: next } = await api(`/v1/creator/earnings/ledger?${query}`, { token: state.token });
    const rows = entries.filter(isGift).map(ledgerRow);
    const body = byTestId("ledger-rows");
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    ledger.shown = more ? ledger.shown + entries.length : entries.length;
    ledger.cursor = next;
    show(byTestId("ledger-more"), Boolean(next));
    show(byTestId("ledger-empty"), body.children.length === 0 && !next);
  } catch (error) {
    showError(error);
  } finally {
    ledger.loading = false;
    byTestId("ledger-more").disabled = false;
  }
  if (ledger.again) {
    ledger.again = false;
    await loadLedger(false);
  }
}

/** A gift's state: the server's when it says; else pending until its hold is over. */
function entryState(entry) {
  if (entry.state) return entry.state;
  const holdMs = (state.terms?.hold_s ?? 0) * 1000;
  return entry.ts + holdMs <= Date.now() ? "available" : "pending";
}

const STATE_WORDS = { pending: "Pending", available: "Available", reversed: "Refunded", clawed_back: "Refunded" };

function ledgerRow(entry) {
  const row = document.createElement("tr");
  row.dataset.testid = "ledger-row";
  row.dataset.id = entry.id;
  const diamonds = entry.diamonds ?? entry.pending ?? 0;
  const giftName = entry.gift_name ?? entry.gift_id ?? "Gift";
  const cells = [
    ["when", new Date(entry.ts).toLocaleString()],
    ["sender", entry.sender_name ?? entry.sender ?? "?"],
    ["gift", `${giftName} ×${formatNumber(entry.count ?? 1)}${entry.video_id ? ` on “${entry.video_title ?? entry.video_id}”` : ""}`],
    ["coins", formatNumber(entry.coins ?? 0)],
    ["diamonds", formatNumber(diamonds)],
    // A gift too small to earn a whole diamond has nothing held or to withdraw.
    ["state", diamonds === 0 ? "–" : STATE_WORDS[entryState(entry)] ?? entryState(entry)],
  ];
  for (const [name, text] of cells) {
    const cell = document.createElement("td");
    cell.dataset.testid = `ledger-${name}`;
    if (name === "coins" || name === "diamonds") {
      cell.className = "num";
      // The unit a phone's card shows after the figure (creator.css): "1 coin", "2 coins".
      const amount = name === "coins" ? (entry.coins ?? 0) : diamonds;
      cell.dataset.unit = amount === 1 ? name.slice(0, -1) : name;
    }
    cell.textContent = text;
    row.append(cell);
  }
  row.dataset.state = entryState(entry);
  row.dataset.coins = entry.coins ?? 0;
  row.dataset.diamonds = diamonds;
  return row;
}

const formatDate = (ms) => new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
const WITHDRAWAL_STATES = { requested: "Requested", pending: "Requested", paid: "Paid", rejected: "Rejected" };

async function refreshWithdrawals() {
  const { withdrawals } = await api("/v1/creator/withdrawals", { token: state.token });
  const items = withdrawals.slice(0, 10).map((withdrawal) => {
    const item = document.createElement("li");
    item.dataset.testid = "withdrawal";
    item.dataset.state = withdrawal.state;
    item.dataset.requestedMs = withdrawal.requested_ms;
    if (withdrawal.decided_ms) item.dataset.decidedMs = withdrawal.decided_ms;
    const amount = `${formatNumber(withdrawal.diamonds)} diamonds → ${formatMoney(withdrawal.amount.amount_minor, withdrawal.amount.currency)}`;
    const stateWord = WITHDRAWAL_STATES[withdrawal.state] ?? withdrawal.state;
    const decided = withdrawal.decided_ms ? ` · ${stateWord} ${formatDate(withdrawal.decided_ms)}` : "";
    item.append(
      span("withdrawal-amount", amount),
      span("badge", stateWord, "withdrawal-state"),
      span("hint", `Requested ${formatDate(withdrawal.requested_ms)}${decided}`, "withdrawal-dates"),
    );
    return item;
  });
  fillList(byTestId("withdrawals"), items, "No withdrawals yet.");
}

const diamondsText = (n) => `${formatNumber(n)} diamond${n === 1 ? "" : "s"}`;

/** One sentence for a refused withdrawal, with the numbers that decide it. */
function withdrawalRefusal(error, asked) {
  const terms = state.terms;
  const cash = (minor) => (terms ? formatMoney(minor, terms.currency) : "");
  if (error.code === "below_minimum_withdrawal") {
    const minimum = error.minimum_diamonds ?? error.details?.minimum_diamonds ?? terms?.min_withdrawal_diamonds;
    if (minimum !== undefined) {
      const value = terms ? ` (${diamondsCash(minimum)})` : "";
      return `You asked for ${diamondsText(asked)}; the minimum withdrawal is ${diamondsText(minimum)}${value}.`;
    }
  }
  if (error.code === "insufficient_diamonds" && state.earnings) {
    return `You asked for ${diamondsText(asked)}; you have ${formatNumber(state.earnings.available)} available to withdraw.`;
  }
  if (error.code === "daily_payout_cap" && terms) {
    return `That would pass today's payout limit of ${cash(terms.daily_payout_cap_minor)}. Try a smaller amount or tomorrow.`;
  }
  return describeError(error.code, error.message);
}

/**
 * The refusal the server would give, known before asking it: below the minimum of the terms,
 * or more than the available diamonds. Null when the server has to decide.
 */
function refusalBeforeAsking(diamonds) {
  if (state.terms && diamonds < state.terms.min_withdrawal_diamonds) return { code: "below_minimum_withdrawal" };
  if (state.earnings && diamonds > state.earnings.available) return { code: "insufficient_diamonds" };
  return null;
}

async function withdraw(diamonds) {
  const status = byTestId("withdraw-state");
  const known = refusalBeforeAsking(diamonds);
  if (known) {
    status.dataset.state = "refused";
    status.textContent = "";
    toast(withdrawalRefusal(known, diamonds), { kind: "error", key: "withdraw" });
    return;
  }
  try {
    // One key per request: a retried click can never reserve the diamonds twice.
    const withdrawal = await api("/v1/creator/withdrawals", {
      method: "POST",
      body: { diamonds, idempotency_key: newIdempotencyKey("wd") },
      token: state.token,
    });
    status.dataset.state = "requested";
    status.textContent = `Requested: ${formatMoney(withdrawal.amount.amount_minor, withdrawal.amount.currency)}. We'll let you know when it's paid.`;
    byTestId("withdraw-input").value = "";
  } catch (error) {
    status.dataset.state = "refused";
    status.textContent = "";
    toast(withdrawalRefusal(error, diamonds), { kind: "error", key: "withdraw" });
  }
  await refresh();
}

// ---------------------------------------------------------------- the overlay

function showOverlay(overlay) {
  state.overlay = overlay;
  renderOverlayLink();
}

/** The overlay options chosen in the builder, as URL parameters (defaults left out). */
function overlayParams() {
  const params = [];
  const position = byTestId("overlay-position").value;
  const scale = byTestId("overlay-scale").value;
  const minCoins = String(clampInt(byTestId("overlay-min-coins").value, 1, 1, 1_000_000_000));
  const widgets = [...byTestId("overlay-widgets").querySelectorAll("input[value]")]
    .filter((box) => box.checked)
    .map((box) => box.value)
    .join(",");
  if (position !== OVERLAY_DEFAULTS.position) params.push(["position", position]);
  if (scale !== OVERLAY_DEFAULTS.scale) params.push(["scale", scale]);
  if (minCoins !== OVERLAY_DEFAULTS.min_coins) params.push(["min_coins", minCoins]);
  if (widgets !== OVERLAY_DEFAULTS.widgets) params.push(["widgets", widgets]);
  if (byTestId("overlay-sound").checked) params.push(["sound", "1"]);
  return params;
}

/** The link to put in OBS, in full: the token and the builder's options (commas kept
 * readable: every value comes from the builder's own fixed choices or digits). */
function overlayLink() {
  const url = new URL(state.overlay.url, location.origin);
  const query = overlayParams().map(([name, value]) => `${name}=${encodeURIComponent(value).replaceAll("%2C", ",")}`);
  return query.length ? `${url.href}?${query.join("&")}` : url.href;
}

/** The link on screen: masked (the token's last 4 characters) unless revealed. */
function renderOverlayLink() {
  const full = overlayLink();
  const token = state.overlay.token;
  const shown = state.revealed ? full : full.replace(token, `${MASK}${token.slice(-4)}`);
  const element = byTestId("overlay-url");
  element.textContent = shown;
  element.dataset.revealed = String(state.revealed);
  const reveal = byTestId("reveal-overlay");
  reveal.textContent = state.revealed ? "Hide" : "Reveal";
  reveal.setAttribute("aria-pressed", String(state.revealed));
}

/** An overlay that shows nothing is no overlay: the last ticked widget stays ticked. */
function keepOneWidget(event) {
  const boxes = [...byTestId("overlay-widgets").querySelectorAll("input[value]")];
  if (event.target.value && !boxes.some((box) => box.checked)) {
    event.target.checked = true;
    toast("The overlay needs at least one thing to show.", { kind: "info", key: "overlay" });
    renderOverlayLink();
  }
}

function toggleReveal() {
  state.revealed = !state.revealed;
  renderOverlayLink();
}

async function copyOverlayUrl() {
  const link = overlayLink();
  if (await copyText(link)) {
    toast("Overlay link copied. Paste it into a Browser source in OBS.", { kind: "ok", key: "overlay" });
    return;
  }
  // No clipboard at all: show the link selected, for Ctrl+C.
  state.revealed = true;
  renderOverlayLink();
  getSelection().selectAllChildren(byTestId("overlay-url"));
  toast("Copying is blocked here: the link is selected, press Ctrl+C (⌘C) to copy it.", { kind: "info", key: "overlay", ms: 8000 });
}

/** The clipboard API (secure contexts), else the older copy command on a hidden field. */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "offscreen";
    document.body.append(field);
    field.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    field.remove();
    return copied;
  }
}

function previewOverlay() {
  window.open(overlayLink(), "_blank", "noopener");
}

async function regenerateOverlay() {
  try {
    showOverlay(await api("/v1/creator/overlay/regenerate", { method: "POST", token: state.token }));
    toast("New link made: the old one has stopped. Copy this one into OBS.", { kind: "ok", key: "overlay" });
  } catch (error) {
    showError(error);
  }
}

async function sendTestAlert() {
  const status = byTestId("overlay-state");
  try {
    await api("/v1/creator/test-alert", { method: "POST", token: state.token });
    status.textContent = "Test alert sent: it shows on your overlay only, not to viewers.";
  } catch (error) {
    status.textContent = "";
    toast(error.code === "not_live" ? "Go LIVE first: the overlay shows alerts of your current LIVE." : describeError(error.code, error.message), {
      kind: "error",
      key: "overlay",
    });
  }
}

// ---------------------------------------------------------------- followers, chat and moderation

async function refreshFollowers() {
  const { followers } = await api(`/v1/creators/${encodeURIComponent(state.me.user_id)}`, { token: state.token });
  byTestId("followers").textContent = formatNumber(followers);
  byTestId("followers").dataset.followers = followers;
}

function showChatSettings(settings) {
  byTestId("slow-mode").value = settings.slow_mode_s;
  byTestId("blocked-words").value = settings.blocked_words.join(", ");
  byTestId("allow-links").checked = settings.allow_links;
}

// Set once the person edits the chat rules: settings that arrive later do not overwrite them.
let chatSettingsEdited = false;

async function loadChatSettings() {
  const settings = await api("/v1/creator/chat-settings", { token: state.token });
  if (!chatSettingsEdited) showChatSettings(settings);
}

/** A refused action: a toast says why; its status line says only that it failed. */
function refused(status, error) {
  status.dataset.state = "failed";
  status.textContent = "";
  showError(error);
}

async function saveChatSettings() {
  const status = byTestId("chat-settings-state");
  const body = {
    slow_mode_s: Number.parseInt(byTestId("slow-mode").value, 10) || 0,
    blocked_words: byTestId("blocked-words").value.split(/[,\n]/).map((word) => word.trim()).filter(Boolean),
    allow_links: byTestId("allow-links").checked,
  };
  try {
    // The answer is the settings as kept (casefolded, each word once): show those.
    showChatSettings(await api("/v1/creator/chat-settings", { method: "PUT", body, token: state.token }));
    status.dataset.state = "saved";
    status.textContent = "Saved.";
  } catch (error) {
    refused(status, error);
  }
}

async function loadModerators() {
  const { moderators } = await api("/v1/creator/moderators", { token: state.token });
  const items = moderators.map((moderator) => {
    const item = personItem(moderator, "moderator", "moderator-name");
    item.dataset.userId = moderator.id;
    item.append(
      linkButton("Remove", `remove-moderator-${moderator.id}`, () => changeModerator(moderator.id, "DELETE")),
    );
    return item;
  });
  fillList(byTestId("moderators"), items, "No moderators yet.");
}

async function changeModerator(userId, method) {
  const status = byTestId("moderators-state");
  try {
    await api(`/v1/creator/moderators/${encodeURIComponent(userId)}`, { method, token: state.token });
    status.dataset.state = "done";
    status.textContent = method === "PUT" ? "Added." : "Removed.";
    if (method === "PUT") byTestId("moderator-id").value = "";
  } catch (error) {
    refused(status, error);
  }
  await loadModerators();
}

/** Bans hold in all of the creator's lives; the endpoint names one of them. */
async function unban(userId) {
  const status = byTestId("unban-state");
  const roomId = state.roomId ?? state.lastRoomId;
  if (!roomId) {
    status.dataset.state = "failed";
    status.textContent = "";
    toast("Unbanning works from one of your LIVEs: go LIVE first.", { kind: "error", key: "error" });
    return;
  }
  try {
    await api(`/v1/rooms/${encodeURIComponent(roomId)}/bans/${encodeURIComponent(userId)}`, { method: "DELETE", token: state.token });
    status.dataset.state = "done";
    status.textContent = `${userId} can watch and chat again.`;
    byTestId("unban-id").value = "";
    if (byTestId("bans-panel").open) await loadBans();
  } catch (error) {
    refused(status, error);
  }
}

/** Read when opened: whom the creator banned, each with its unban button. */
async function loadBans() {
  try {
    const { bans } = await api("/v1/creator/bans", { token: state.token });
    const items = bans.map((user) => {
      const item = personItem(user, "banned-user");
      item.append(linkButton("Unban", `unban-${user.id}`, () => unban(user.id)));
      return item;
    });
    fillList(byTestId("bans"), items, "Nobody is banned.");
  } catch (error) {
    showError(error);
  }
}

const LOG_VERBS = {
  delete: "deleted a message of",
  mute: "muted",
  unmute: "unmuted",
  ban: "banned",
  unban: "unbanned",
  add_moderator: "made a moderator:",
  remove_moderator: "removed as moderator:",
};
const who = (person) => (person && typeof person === "object" ? person.name ?? person.id : String(person ?? "?"));

/** Read when opened (and page by page on "Older"): newest first. */
async function loadModerationLog(more = false) {
  const list = byTestId("moderation-log");
  const query = more && state.logCursor ? `?cursor=${encodeURIComponent(state.logCursor)}` : "";
  try {
    const { entries, next_cursor: next } = await api(`/v1/creator/moderation-log${query}`, { token: state.token });
    state.logCursor = next;
    const items = entries.map((entry) => {
      const item = document.createElement("li");
      item.dataset.testid = "moderation-entry";
      item.dataset.action = entry.action;
      const when = span("hint", new Date(entry.ts).toLocaleString());
      const what = document.createElement("span");
      const minutes = entry.seconds ? ` for ${Math.ceil(entry.seconds / 60)} min` : "";
      what.textContent = `${who(entry.actor)} ${LOG_VERBS[entry.action] ?? entry.action} ${who(entry.target)}${minutes}`;
      item.append(what, when);
      return item;
    });
    if (more) list.append(...items);
    else list.replaceChildren(...items);
    show(byTestId("moderation-log-more"), Boolean(next));
  } catch (error) {
    showError(error);
  }
}

// ---------------------------------------------------------------- lists

/** A <span> with this class and text, and this test id when one is given. */
function span(className, text, testid) {
  const element = document.createElement("span");
  element.className = className;
  if (testid) element.dataset.testid = testid;
  element.textContent = text;
  return element;
}

/** A list's items, or one line saying there are none. */
function fillList(list, items, emptyText) {
  if (items.length > 0) {
    list.replaceChildren(...items);
    return;
  }
  const none = document.createElement("li");
  none.className = "hint";
  none.textContent = emptyText;
  list.replaceChildren(none);
}

/** A person in a list (a moderator, a banned user): their name, then their id. */
function personItem(person, testid, nameTestid) {
  const item = document.createElement("li");
  item.dataset.testid = testid;
  item.append(span("person-name", person.name, nameTestid), span("hint", person.id));
  return item;
}

/** A button that looks like a link, for one action on a list's item. */
function linkButton(label, testid, run) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link";
  button.dataset.testid = testid;
  button.textContent = label;
  button.addEventListener("click", run);
  return button;
}

// ---------------------------------------------------------------- notices and wiring

function showError(error) {
  toast(describeError(error.code, error.message), { kind: "error", key: "error" });
}

/** A confirm dialog: `run` only when the person picks `value`. */
function onDialogChoice(dialog, value, run) {
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === value) run();
    dialog.returnValue = "";
  });
}

function wire() {
  for (const button of byTestId("demo-users").querySelectorAll("button")) {
    button.addEventListener("click", () => signIn(button.dataset.user));
  }
  byTestId("custom-user").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(byTestId("user-id").value.trim());
  });
  byTestId("sign-out").addEventListener("click", signOut);
  byTestId("go-live").addEventListener("click", goLive);
  byTestId("end-live").addEventListener("click", askToEndLive);
  onDialogChoice(byTestId("end-dialog"), "end", endLive);
  byTestId("goal-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setGoal(Number.parseInt(byTestId("goal-input").value, 10));
  });
  byTestId("withdraw-form").addEventListener("submit", (event) => {
    event.preventDefault();
    withdraw(Number.parseInt(byTestId("withdraw-input").value, 10));
  });
  byTestId("ledger-more").addEventListener("click", () => loadLedger(true));
  byTestId("copy-overlay").addEventListener("click", copyOverlayUrl);
  byTestId("reveal-overlay").addEventListener("click", toggleReveal);
  byTestId("open-overlay").addEventListener("click", previewOverlay);
  byTestId("overlay-builder").addEventListener("input", renderOverlayLink);
  byTestId("overlay-widgets").addEventListener("change", keepOneWidget);
  byTestId("regenerate-overlay").addEventListener("click", () => byTestId("regenerate-dialog").showModal());
  onDialogChoice(byTestId("regenerate-dialog"), "regenerate", regenerateOverlay);
  byTestId("test-alert").addEventListener("click", sendTestAlert);
  byTestId("chat-settings-form").addEventListener("input", () => {
    chatSettingsEdited = true;
  });
  byTestId("chat-settings-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveChatSettings();
  });
  byTestId("moderator-form").addEventListener("submit", (event) => {
    event.preventDefault();
    changeModerator(byTestId("moderator-id").value.trim(), "PUT");
  });
  byTestId("unban-form").addEventListener("submit", (event) => {
    event.preventDefault();
    unban(byTestId("unban-id").value.trim());
  });
  byTestId("bans-panel").addEventListener("toggle", (event) => event.target.open && loadBans());
  byTestId("moderation-log-panel").addEventListener("toggle", (event) => event.target.open && loadModerationLog());
  byTestId("moderation-log-more").addEventListener("click", () => loadModerationLog(true));
}

const videos = new VideosSection();
start();
