// creator.js — the creator dashboard: go live, set the goal, watch earnings, withdraw,
// manage the OBS overlay link and send a test alert to it.

import { api, byTestId, clearToken, demoSignIn, formatMoney, formatNumber, getToken, newIdempotencyKey, show } from "./api.js";
import { describeError } from "./errors.js";

const ROLE = "creator";
const REFRESH_MS = 3000;

const state = { token: null, me: null, overlay: null, roomId: null, timer: null, confirmRegenerate: false };

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
  await refresh();
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
    await Promise.all([refreshLive(), refreshEarnings(), refreshWithdrawals()]);
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
}

start();
