// creator.js — the creator dashboard: go live, set the goal, watch earnings, withdraw,
// manage the OBS overlay link and send a test alert to it; chat settings, moderators, bans,
// the moderation log and the follower count.

import { api, byTestId, clearToken, demoSignIn, formatMoney, formatNumber, getToken, newIdempotencyKey, show } from "./api.js";
import { describeError } from "./errors.js";

const ROLE = "creator";
const REFRESH_MS = 3000;

const state = { token: null, me: null, overlay: null, roomId: null, lastRoomId: null, timer: null, confirmRegenerate: false, logCursor: null };

// ---------------------------------------------------------------- signing in (demo mode)

async function start() {
  wire();
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
  await Promise.all([refresh(), loadChatSettings(), loadModerators()]);
  state.timer = setInterval(() => document.visibilityState === "visible" && refresh(), REFRESH_MS);
}

function signOut() {
  clearInterval(state.timer);
  clearToken(ROLE);
  show(byTestId("dashboard"), false);
  show(byTestId("account"), false);
  show(byTestId("sign-in"));
}

async function refresh() {
  try {
    await Promise.all([refreshLive(), refreshEarnings(), refreshWithdrawals(), refreshFollowers()]);
  } catch (error) {
    if (error.code === "unauthorized") signOut();
    showError(error);
  }
}

// ---------------------------------------------------------------- the live

async function refreshLive() {
  // The overlay endpoint answers "which room is this creator live in" in one call.
  const { room_id: roomId } = await api(`/v1/overlay/${encodeURIComponent(state.overlay.token)}`);
  state.roomId = roomId;
  if (roomId) state.lastRoomId = roomId;
  const liveState = byTestId("live-state");
  liveState.dataset.live = String(Boolean(roomId));
  show(byTestId("offline-controls"), !roomId);
  show(byTestId("live-controls"), Boolean(roomId));
  if (!roomId) {
    liveState.textContent = "Offline";
    return;
  }
  const room = await api(`/v1/rooms/${encodeURIComponent(roomId)}`);
  liveState.textContent = `Live: ${room.title}`;
  byTestId("live-viewers").textContent = formatNumber(room.snapshot.viewers);
  byTestId("live-coins").textContent = formatNumber(room.snapshot.goal.progress);
  const goalInput = byTestId("goal-input");
  if (document.activeElement !== goalInput && room.snapshot.goal.target !== null) goalInput.value = room.snapshot.goal.target;
}

async function goLive() {
  const title = byTestId("live-title").value.trim();
  await act(() => api("/v1/rooms", { method: "POST", body: title ? { title } : {}, token: state.token }));
}

async function endLive() {
  if (!state.roomId) return;
  await act(() => api(`/v1/rooms/${encodeURIComponent(state.roomId)}/end`, { method: "POST", token: state.token }));
}

async function setGoal(coins) {
  await act(() => api(`/v1/rooms/${encodeURIComponent(state.roomId)}/goal`, { method: "PUT", body: { coins }, token: state.token }));
}

/** Run an action, show its error if any, then refresh what is on screen. */
async function act(action) {
  try {
    await action();
    hideMessage();
  } catch (error) {
    showError(error);
  }
  await refresh();
}

// ---------------------------------------------------------------- money

async function refreshEarnings() {
  const earnings = await api("/v1/creator/earnings", { token: state.token });
  for (const field of ["pending", "available", "reserved", "withdrawn", "lifetime"]) {
    byTestId(field).textContent = formatNumber(earnings[field]);
    byTestId(field).dataset.diamonds = earnings[field];
  }
  // The server computes cash values (exact integer arithmetic); the page only formats them.
  byTestId("pending-value").textContent = formatMoney(earnings.pending_value_minor, earnings.currency);
  byTestId("available-value").textContent = formatMoney(earnings.diamond_value_minor, earnings.currency);
}

async function refreshWithdrawals() {
  const { withdrawals } = await api("/v1/creator/withdrawals", { token: state.token });
  byTestId("withdrawals").replaceChildren(
    ...withdrawals.slice(0, 5).map((withdrawal) => {
      const item = document.createElement("li");
      const what = document.createElement("span");
      what.textContent = `${formatNumber(withdrawal.diamonds)} diamonds → ${formatMoney(withdrawal.amount.amount_minor, withdrawal.amount.currency)}`;
      const where = document.createElement("span");
      where.className = "hint";
      where.textContent = withdrawal.state;
      item.append(what, where);
      return item;
    }),
  );
}

async function withdraw(diamonds) {
  const status = byTestId("withdraw-state");
  try {
    // One key per request: a retried click can never reserve the diamonds twice.
    const withdrawal = await api("/v1/creator/withdrawals", {
      method: "POST",
      body: { diamonds, idempotency_key: newIdempotencyKey("wd") },
      token: state.token,
    });
    status.textContent = `Requested: ${formatMoney(withdrawal.amount.amount_minor, withdrawal.amount.currency)}. We'll let you know when it's paid.`;
    byTestId("withdraw-input").value = "";
  } catch (error) {
    // The server's message names the limit (e.g. the minimum), so show it as well.
    status.textContent = `${describeError(error.code, error.message)} ${error.code === "below_minimum_withdrawal" ? error.message : ""}`.trim();
  }
  await refresh();
}

// ---------------------------------------------------------------- the overlay

function showOverlay(overlay) {
  state.overlay = overlay;
  const url = new URL(overlay.url, location.origin).href;
  byTestId("overlay-url").value = url;
  byTestId("open-overlay").href = url;
}

async function copyOverlayUrl() {
  const input = byTestId("overlay-url");
  try {
    await navigator.clipboard.writeText(input.value);
    byTestId("overlay-state").textContent = "Copied.";
  } catch {
    // The clipboard API needs a secure context (https or localhost): select it instead.
    input.select();
    byTestId("overlay-state").textContent = "Press Ctrl+C (⌘C) to copy the selected link.";
  }
}

async function regenerateOverlay() {
  const button = byTestId("regenerate-overlay");
  if (!state.confirmRegenerate) {
    // Two clicks: the old link stops working at once, so an OBS scene using it goes blank.
    state.confirmRegenerate = true;
    button.textContent = "Click again: the old link stops working";
    setTimeout(() => {
      state.confirmRegenerate = false;
      button.textContent = "Regenerate link";
    }, 4000);
    return;
  }
  state.confirmRegenerate = false;
  button.textContent = "Regenerate link";
  try {
    showOverlay(await api("/v1/creator/overlay/regenerate", { method: "POST", token: state.token }));
    byTestId("overlay-state").textContent = "New link made. Update the Browser source in OBS.";
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
    status.textContent = error.code === "not_live" ? "Go live first: the overlay shows alerts of your current live." : describeError(error.code, error.message);
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

async function loadChatSettings() {
  showChatSettings(await api("/v1/creator/chat-settings", { token: state.token }));
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
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
  }
}

async function loadModerators() {
  const { moderators } = await api("/v1/creator/moderators", { token: state.token });
  byTestId("moderators").replaceChildren(
    ...moderators.map((moderator) => {
      const item = document.createElement("li");
      item.dataset.testid = "moderator";
      item.dataset.userId = moderator.id;
      const name = document.createElement("span");
      name.className = "person-name";
      name.dataset.testid = "moderator-name";
      name.textContent = moderator.name;
      const id = document.createElement("span");
      id.className = "hint";
      id.textContent = moderator.id;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.dataset.testid = `remove-moderator-${moderator.id}`;
      remove.textContent = "Remove";
      remove.addEventListener("click", () => changeModerator(moderator.id, "DELETE"));
      item.append(name, id, remove);
      return item;
    }),
  );
  if (moderators.length === 0) {
    const none = document.createElement("li");
    none.className = "hint";
    none.textContent = "No moderators yet.";
    byTestId("moderators").append(none);
  }
}

async function changeModerator(userId, method) {
  const status = byTestId("moderators-state");
  try {
    await api(`/v1/creator/moderators/${encodeURIComponent(userId)}`, { method, token: state.token });
    status.textContent = method === "PUT" ? "Added." : "Removed.";
    if (method === "PUT") byTestId("moderator-id").value = "";
  } catch (error) {
    status.textContent = describeError(error.code, error.message);
  }
  await loadModerators();
}

/** Bans hold in all of the creator's lives; the endpoint names one of them. */
async function unban(userId) {
  const status = byTestId("unban-state");
  const roomId = state.roomId ?? state.lastRoomId;
  if (!roomId) {
    status.textContent = "Unbanning works from one of your lives: go live first.";
    return;
  }
  try {
    await api(`/v1/rooms/${encodeURIComponent(roomId)}/bans/${encodeURIComponent(userId)}`, { method: "DELETE", token: state.token });
    status.dataset.state = "done";
    status.textContent = `${userId} can watch and chat again.`;
    byTestId("unban-id").value = "";
    if (byTestId("bans-panel").open) await loadBans();
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
  }
}

/** Read when opened: whom the creator banned, each with its unban button. */
async function loadBans() {
  try {
    const { bans } = await api("/v1/creator/bans", { token: state.token });
    const items = bans.map((user) => {
      const item = document.createElement("li");
      item.dataset.testid = "banned-user";
      const name = document.createElement("span");
      name.className = "person-name";
      name.textContent = user.name;
      const id = document.createElement("span");
      id.className = "hint";
      id.textContent = user.id;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.dataset.testid = `unban-${user.id}`;
      button.textContent = "Unban";
      button.addEventListener("click", () => unban(user.id));
      item.append(name, id, button);
      return item;
    });
    if (items.length === 0) {
      const none = document.createElement("li");
      none.className = "hint";
      none.textContent = "Nobody is banned.";
      items.push(none);
    }
    byTestId("bans").replaceChildren(...items);
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
      const when = document.createElement("span");
      when.className = "hint";
      when.textContent = new Date(entry.ts).toLocaleString();
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

// ---------------------------------------------------------------- messages and wiring

function showError(error) {
  byTestId("message-text").textContent = describeError(error.code, error.message);
  show(byTestId("message"));
}

function hideMessage() {
  show(byTestId("message"), false);
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
  byTestId("message-close").addEventListener("click", hideMessage);
  byTestId("go-live").addEventListener("click", goLive);
  byTestId("end-live").addEventListener("click", endLive);
  byTestId("goal-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setGoal(Number.parseInt(byTestId("goal-input").value, 10));
  });
  byTestId("withdraw-form").addEventListener("submit", (event) => {
    event.preventDefault();
    withdraw(Number.parseInt(byTestId("withdraw-input").value, 10));
  });
  byTestId("copy-overlay").addEventListener("click", copyOverlayUrl);
  byTestId("regenerate-overlay").addEventListener("click", regenerateOverlay);
  byTestId("test-alert").addEventListener("click", sendTestAlert);
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

start();
