// overlay.js — the streamer's OBS overlay: alerts, running combos, top gifters, goal bar,
// and optionally the chat.
//
// The page's URL holds the creator's overlay token (/overlay/<token>). Its parameters:
// `?likes_every=N` alerts at every N likes of the live (none without it), `?chat=1` shows
// the chat. The token is
// read-only: it opens the overlay socket of the creator's current live and nothing else.
// The overlay outlives any one live: when the creator is not live it keeps retrying, so
// the OBS scene can stay open for days.

import { api, byTestId, formatNumber, show, wsUrl } from "./api.js";
import { appendToChat, chatItem } from "./chat.js";
import { describeError } from "./errors.js";
import { comboKey, GiftCatalog } from "./gifts.js";
import { RoomConnection } from "./live.js";
import { renderGoal, renderLeaderboard } from "./widgets.js";

const STAGE_WIDTH = 1920;
const STAGE_HEIGHT = 1080;
const ALERT_MS = 3500; // on screen, plus 250 ms in and 250 ms out: at most 4 s per alert
const BUSY_ALERT_MS = 1500; // shorter while alerts queue up, so the overlay never lags far behind
const BUSY_QUEUE = 3;
const MAX_QUEUE = 50; // beyond this, the oldest waiting alerts are dropped
const FADE_MS = 250;
const STALE_COMBO_MS = 15_000;
const CHAT_LENGTH = 8; // messages on screen in the chat widget

const params = new URLSearchParams(location.search);
const LIKES_EVERY = Math.max(0, Number.parseInt(params.get("likes_every") ?? "", 10) || 0);
const SHOW_CHAT = params.get("chat") === "1";
// Badges of the alerts that are not gifts: a symbol and a hue, as gifts.js draws a gift.
const SOCIAL_LOOKS = { follow: ["+", 190], share: ["↗", 140], likes: ["♥", 345] };

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
const state = { catalog: new GiftCatalog(), creatorName: "the creator", connection: null, queue: [], showing: false, likes: null };

async function start() {
  fitStage();
  window.addEventListener("resize", fitStage);
  show(byTestId("chat-widget"), SHOW_CHAT);
  try {
    const [catalog, info] = await Promise.all([GiftCatalog.load(), api(`/v1/overlay/${encodeURIComponent(token)}`)]);
    state.catalog = catalog;
    state.creatorName = info.creator.name;
  } catch (error) {
    if (error.code === "overlay_not_found") return showStatus("closed", describeError(error.code));
    // Anything else (the server restarting, say): the socket below retries by itself.
  }
  state.connection = new RoomConnection({
    url: wsUrl(`/v1/overlay/${encodeURIComponent(token)}/ws`),
    onFrame: handleFrame,
    onState: handleState,
    // Unlike a viewer, the overlay stops only when its token is refused. "Not live" (4404)
    // and "the live ended" (1000) mean: wait for the next live.
    isFinal: (code) => code === 4401,
    maxDelayMs: 5000,
  }).start();
}

/** Scale the 1920×1080 stage to whatever size the browser source has. */
function fitStage() {
  const scale = Math.min(window.innerWidth / STAGE_WIDTH, window.innerHeight / STAGE_HEIGHT);
  byTestId("overlay-stage").style.transform = `scale(${scale})`;
}

function handleFrame(frame) {
  switch (frame.type) {
    case "welcome":
      if (!frame.resumed) clearLiveCombos();
      // Loaded at start, unless the server was down then: the catalog says what can streak.
      if (state.catalog.byId.size === 0) GiftCatalog.load().then((catalog) => (state.catalog = catalog), () => {});
      renderSnapshot(frame.snapshot);
      // Milestones count from here: the ones passed before the overlay opened are old news.
      state.likes = frame.snapshot.likes ?? 0;
      if (SHOW_CHAT && !frame.resumed) {
        byTestId("chat-list").replaceChildren();
        for (const message of frame.recent_chat ?? []) appendToChat(byTestId("chat-list"), chatItem(message), CHAT_LENGTH);
      }
      break;
    case "batch":
      for (const event of frame.events) handleEvent(event);
      break;
    case "resync":
      clearLiveCombos();
      break;
    case "error":
      if (frame.code === "not_live") showStatus("waiting", `Waiting for ${state.creatorName} to go live…`);
      else if (frame.code === "unauthorized") showStatus("closed", describeError("overlay_not_found"));
      break;
  }
}

function handleEvent(event) {
  switch (event.type) {
    case "gift":
      if (state.catalog.streakable(event.gift_id)) updateLiveCombo(event);
      // A gift that can't streak never gets a combo_end: it is its own alert.
      else enqueueAlert(event);
      break;
    case "combo_end":
      removeLiveCombo(event);
      enqueueAlert(event);
      break;
    case "test_alert": // sent by the creator's "Test alert" button; only overlays get it
      enqueueAlert(event);
      break;
    case "follow":
      enqueueSocialAlert("follow", event.sender.name, "followed");
      break;
    case "share":
      enqueueSocialAlert("share", event.sender.name, "shared the live");
      break;
    case "likes":
      likeMilestones(event.total);
      break;
    case "chat":
      if (SHOW_CHAT) appendToChat(byTestId("chat-list"), chatItem(event), CHAT_LENGTH);
      break;
    case "chat_deleted":
      byTestId("chat-list").querySelector(`[data-event-id="${CSS.escape(event.event_id)}"]`)?.remove();
      break;
    case "leaderboard":
      renderLeaderboard(byTestId("top-gifters"), event.leaderboard, 5);
      show(byTestId("top-gifters-panel"), event.leaderboard.length > 0);
      break;
    case "goal":
      renderGoal(byTestId("goal"), event);
      show(byTestId("goal"), event.target !== null);
      break;
    case "room_end":
      // The next live is a new room with a new event log: don't try to resume this one.
      state.connection.forgetPosition();
      clearLiveCombos();
      show(byTestId("top-gifters-panel"), false);
      show(byTestId("goal"), false);
      byTestId("chat-list").replaceChildren();
      state.likes = null;
      break;
  }
}

function renderSnapshot(snapshot) {
  renderLeaderboard(byTestId("top-gifters"), snapshot.leaderboard, 5);
  show(byTestId("top-gifters-panel"), snapshot.leaderboard.length > 0);
  renderGoal(byTestId("goal"), snapshot.goal);
  show(byTestId("goal"), snapshot.goal.target !== null);
}

function handleState(connectionState, detail) {
  if (connectionState === "open") return showStatus("open", "");
  if (connectionState === "reconnecting" && detail.code === 1000) state.connection.forgetPosition();
  // Keep the "waiting for the live" text while retrying after not_live.
  const status = byTestId("connection-state");
  if (connectionState === "reconnecting" && status.dataset.state === "waiting") return;
  if (connectionState === "reconnecting") showStatus("reconnecting", "Reconnecting…");
  else if (connectionState === "connecting" && status.dataset.state === "idle") showStatus("connecting", "Connecting…");
  else if (connectionState === "closed") showStatus("closed", describeError("overlay_not_found"));
}

function showStatus(name, text) {
  const status = byTestId("connection-state");
  status.dataset.state = name;
  status.textContent = text;
}

// ---------------------------------------------------------------- running combos

function updateLiveCombo(event) {
  const list = byTestId("live-combos");
  const key = comboKey(event);
  let item = list.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.key = key;
    item.dataset.testid = "live-combo";
    const name = document.createElement("span");
    name.className = "combo-name";
    const count = document.createElement("strong");
    count.dataset.testid = "live-combo-count";
    item.append(state.catalog.badge(event.gift_id), name, count);
    list.append(item);
  }
  item.children[1].textContent = `${event.sender.name} · ${state.catalog.name(event.gift_id)}`;
  item.children[2].textContent = `×${event.combo}`;
  clearTimeout(item.staleTimer);
  item.staleTimer = setTimeout(() => item.remove(), STALE_COMBO_MS);
}

function removeLiveCombo(event) {
  byTestId("live-combos").querySelector(`[data-key="${CSS.escape(comboKey(event))}"]`)?.remove();
}

function clearLiveCombos() {
  byTestId("live-combos").replaceChildren();
}

// ---------------------------------------------------------------- the alert queue

/** One alert per finished combo (or unstreakable gift, or test alert), one at a time. */
function enqueueAlert(event) {
  pushAlert({ kind: "gift", name: event.sender.name, giftId: event.gift_id, count: event.combo });
}

/** A follow, a share or a like milestone: the same queue as the gifts. */
function enqueueSocialAlert(kind, name, verb) {
  pushAlert({ kind, name, verb });
}

/** One alert for each multiple of `likes_every` the like total passed. */
function likeMilestones(total) {
  const before = state.likes;
  state.likes = total;
  if (!LIKES_EVERY || before === null) return;
  const reached = Math.floor(total / LIKES_EVERY);
  // A burst of likes can pass several milestones in one tick: the highest one is the news.
  if (reached > Math.floor(before / LIKES_EVERY)) {
    enqueueSocialAlert("likes", `${formatNumber(reached * LIKES_EVERY)} likes`, "Thank you!");
  }
}

function pushAlert(alert) {
  state.queue.push(alert);
  if (state.queue.length > MAX_QUEUE) state.queue.splice(0, state.queue.length - MAX_QUEUE);
  if (!state.showing) showNextAlert();
}

function socialBadge(kind) {
  const [symbol, hue] = SOCIAL_LOOKS[kind];
  const badge = document.createElement("span");
  badge.className = "gift-badge";
  badge.textContent = symbol;
  badge.style.setProperty("--hue", String(hue));
  return badge;
}

async function showNextAlert() {
  const next = state.queue.shift();
  if (!next) {
    state.showing = false;
    return;
  }
  state.showing = true;
  const alert = byTestId("alert");
  alert.dataset.kind = next.kind;
  byTestId("alert-name").textContent = next.name;
  if (next.kind === "gift") {
    byTestId("alert-verb").textContent = "sent";
    byTestId("alert-gift").textContent = state.catalog.name(next.giftId);
    byTestId("alert-count").textContent = `×${next.count}`;
    byTestId("alert-badge").replaceChildren(state.catalog.badge(next.giftId));
  } else {
    byTestId("alert-verb").textContent = next.verb;
    byTestId("alert-gift").textContent = "";
    byTestId("alert-count").textContent = "";
    byTestId("alert-badge").replaceChildren(socialBadge(next.kind));
  }
  alert.classList.remove("leaving");
  show(alert);
  const onScreen = state.queue.length >= BUSY_QUEUE ? BUSY_ALERT_MS : ALERT_MS;
  await sleep(onScreen);
  alert.classList.add("leaving"); // CSS fades it out (or not, with reduced motion)
  await sleep(FADE_MS);
  show(alert, false);
  showNextAlert();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

start();
