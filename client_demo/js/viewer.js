// viewer.js — the viewer page: sign in (demo), pick a live, buy coins, send gifts, chat,
// like, follow and share, watch; the creator and moderators also moderate the chat here.
//
// On a phone the room is a live app: the stage fills the screen, chat and the gift feed float
// over its lower part, the gift tray is a bottom sheet. Every error and notice is a toast
// (toast.js): nothing ever moves under a finger.

import { api, byTestId, clearToken, demoSignIn, formatMoney, formatNumber, getToken, newIdempotencyKey, show, wsUrl } from "./api.js";
import { BattleBar, winnerMoment } from "./battle.js";
import { appendToChat, chatItem, joinsText, noticeItem } from "./chat.js";
import { describeChatError, describeError, describeGiftError, RETRYABLE_GIFT_ERRORS } from "./errors.js";
import { comboKey, GiftCatalog, reducedMotion } from "./gifts.js";
import { RoomConnection } from "./live.js";
import { MomentQueue } from "./moments.js";
import { StripeCard } from "./stripe.js";
import { clearToasts, toast } from "./toast.js";
import { markAffordable as markTray, renderTray, wireTray } from "./tray.js";
import { renderGoal, renderLeaderboard } from "./widgets.js";

const ROLE = "viewer";
const DEFAULT_REGION = "US";
const COMBO_LINGER_MS = 1500; // how long a finished ×N stays before it fades
const SINGLE_GIFT_MS = 3000; // how long a small gift that makes no combo shows its badge
const FEED_LENGTH = 30;
const STALE_COMBO_MS = 15_000;
const CHAT_LENGTH = 100; // messages kept on screen
const LIKE_EVERY_MS = 1000; // at most one `like` frame per second…
const MAX_LIKES_PER_FRAME = 15; // …of 1–15 taps: the server's per-user like rate
const MAX_HEARTS = 30;
const JOINS_MS = 3000;
const CHAT_ERROR_MS = 8000;
const OTHER_LIVES = 5; // offered when a live ends; "See all lives" has the rest
const MUTE_S = 300;
const OFFLINE_TOAST = "offline"; // the one toast about gifts waiting for the connection
const noConfirmKey = (roomId) => `gifting.no-confirm.${roomId}`;

const state = {
  token: null,
  me: null,
  region: DEFAULT_REGION,
  catalog: new GiftCatalog(),
  connection: null,
  roomId: null,
  ended: false, // the live is over: nothing more can be sent
  coins: null, // the balance as last heard from the server
  // Gift frames sent but not yet answered, by idempotency key. After a dropped connection
  // they are sent again with the SAME key: the server charges each key at most once.
  pending: new Map(),
  // Chat frames sent but not yet answered, by client_id: resent with the same id after a
  // reconnect, so a message is posted once however often it is sent.
  pendingChat: new Map(),
  room: null, // the welcome's room: its creator decides who may moderate
  moderator: false, // learnt from the badges of our own messages
  likesToSend: 0,
  likeTimer: null,
  following: false,
  moments: null, // MomentQueue on the stage: big gifts, one at a time
  battle: null, // BattleBar on the stage: a battle of this live with another
  checkout: null, // the package being bought
  paying: false,
  // Which provider takes this page's payments (GET /v1/payments/providers): the sandbox (the
  // demo) or Stripe, with the card field (StripeCard) made on the first Stripe checkout.
  payments: null,
  stripeCard: null,
  stripeOrder: null, // the order of this checkout: a declined card is tried again on it
};

// ---------------------------------------------------------------- signing in (demo mode)

async function start() {
  wireStaticControls();
  state.payments = loadPayments();
  state.moments = new MomentQueue(byTestId("moment-layer"));
  // The other creator's name opens their live; the winner is a moment in the stage's queue.
  state.battle = new BattleBar(byTestId("battle"), {
    onOpponent: (roomId) => joinRoom(roomId),
    onEnd: (end) => state.moments.push(winnerMoment(end)),
  });
  state.token = getToken(ROLE);
  if (state.token) {
    try {
      return await signedIn(await api("/v1/me", { token: state.token }));
    } catch {
      clearToken(ROLE);
    }
  }
  showSignIn();
}

function showSignIn() {
  state.connection?.stop();
  state.connection = null;
  show(byTestId("account"), false);
  show(byTestId("lobby"), false);
  show(byTestId("room"), false);
  show(byTestId("sign-in"));
}

async function signIn(userId, name) {
  try {
    state.token = await demoSignIn(ROLE, userId, name || null);
    await signedIn(await api("/v1/me", { token: state.token }));
  } catch (error) {
    alertError(error);
  }
}

async function signedIn(me) {
  state.me = me;
  state.region = me.region ?? DEFAULT_REGION;
  byTestId("region").value = state.region;
  byTestId("user-name").textContent = me.name;
  show(byTestId("sign-in"), false);
  show(byTestId("account"));
  await Promise.all([refreshWallet(), loadCatalog()]);
  const roomFromLink = new URLSearchParams(location.search).get("room");
  if (roomFromLink) joinRoom(roomFromLink);
  else showLobby();
}

// ---------------------------------------------------------------- lobby

/** The lives now, as list items with a Watch button each (the lobby and the ended panel). */
async function roomItems(except = null) {
  const { rooms } = await api("/v1/rooms");
  return rooms
    .filter((room) => room.room_id !== except)
    .map((room) => {
      const item = document.createElement("li");
      const title = document.createElement("span");
      title.className = "room-title";
      title.textContent = room.title;
      const viewers = document.createElement("span");
      viewers.className = "hint";
      viewers.textContent = `${formatNumber(room.viewers)} watching`;
      const join = document.createElement("button");
      join.type = "button";
      join.textContent = "Watch";
      join.dataset.testid = `join-${room.room_id}`;
      join.setAttribute("aria-label", `Watch ${room.title}`);
      join.addEventListener("click", () => joinRoom(room.room_id));
      item.append(title, viewers, join);
      return item;
    });
}

function nobodyLive() {
  const item = document.createElement("li");
  item.className = "hint";
  item.textContent = "Nobody else is live right now.";
  return item;
}

async function showLobby() {
  show(byTestId("room"), false);
  document.body.classList.remove("in-room");
  show(byTestId("lobby"));
  try {
    const items = await roomItems();
    byTestId("rooms").replaceChildren(...(items.length ? items : [nobodyLive()]));
  } catch (error) {
    alertError(error);
  }
}

// ---------------------------------------------------------------- the room

function joinRoom(roomId) {
  state.connection?.stop();
  state.roomId = roomId;
  state.ended = false;
  state.pending.clear();
  state.pendingChat.clear();
  state.likesToSend = 0;
  state.moderator = false;
  resetRoomView();
  state.battle.setRoom(roomId);
  showEnded(false);
  show(byTestId("lobby"), false);
  show(byTestId("room"));
  document.body.classList.add("in-room");
  history.replaceState(null, "", `?room=${encodeURIComponent(roomId)}`);
  state.connection = new RoomConnection({
    url: wsUrl(`/v1/rooms/${encodeURIComponent(roomId)}/ws`),
    // Browsers can't set an Authorization header on a WebSocket. Offering the token as a
    // "bearer.<jwt>" subprotocol keeps it out of the URL (and out of access logs).
    protocols: [`bearer.${state.token}`],
    onFrame: handleFrame,
    onState: showConnectionState,
  }).start();
}

function leaveRoom() {
  state.connection?.stop();
  state.connection = null;
  state.roomId = null;
  state.battle.setRoom(null);
  openGiftSheet(false);
  clearToasts(OFFLINE_TOAST);
  history.replaceState(null, "", location.pathname);
  show(byTestId("connection-state"), false);
  showLobby();
}

function resetRoomView() {
  byTestId("feed").replaceChildren();
  byTestId("chat-list").replaceChildren();
  byTestId("heart-layer").replaceChildren();
  show(byTestId("joins"), false);
  hideChatError();
  byTestId("combos").replaceChildren();
  state.moments.clear();
}

function handleFrame(frame) {
  switch (frame.type) {
    case "welcome":
      // A fresh welcome (not a resume) means: start over from this snapshot.
      if (!frame.resumed) resetRoomView();
      byTestId("room-title").textContent = frame.room.title;
      state.room = frame.room;
      applySnapshot(frame.snapshot, !frame.resumed);
      state.battle.welcome(frame.battle ?? null);
      if (!frame.resumed) for (const message of frame.recent_chat ?? []) addChat(message);
      loadCreator(frame.room.creator_id);
      resendPendingGifts();
      resendPendingChat();
      break;
    case "batch":
      for (const event of frame.events) handleEvent(event);
      break;
    case "balance":
      showBalance(frame.coins);
      break;
    case "gift_ack":
      state.pending.delete(frame.idempotency_key);
      showBalance(frame.coins);
      break;
    case "chat_ack":
      state.pendingChat.delete(frame.client_id);
      break;
    case "error":
      // A ban's error frame comes right before the close 4403, which says it with a way out.
      if (frame.code === "banned") break;
      if (frame.client_id !== undefined) handleChatError(frame);
      else handleGiftError(frame);
      break;
    case "resync":
      // The resume window was lost (or the live restarted); a full welcome follows.
      resetRoomView();
      break;
    case "battle":
    case "battle_end":
      handleEvent(frame);
      break;
  }
}

function applySnapshot(snapshot, withRecent) {
  byTestId("viewers").textContent = formatNumber(snapshot.viewers);
  renderLeaderboard(byTestId("leaderboard"), snapshot.leaderboard);
  renderGoal(byTestId("goal"), snapshot.goal);
  showLikes(snapshot.likes ?? 0);
  showFollowers(snapshot.followers ?? 0);
  if (withRecent) for (const gift of snapshot.recent) addToFeed(gift);
}

function handleEvent(event) {
  switch (event.type) {
    case "gift":
      showGift(event);
      break;
    case "combo_end":
      endCombo(event);
      addNotice("gift", event.sender.name, `sent ${state.catalog.name(event.gift_id)} ×${event.combo}`);
      break;
    case "leaderboard":
      renderLeaderboard(byTestId("leaderboard"), event.leaderboard);
      break;
    case "goal":
      renderGoal(byTestId("goal"), event);
      break;
    case "viewers":
      byTestId("viewers").textContent = formatNumber(event.viewers);
      break;
    case "chat":
      addChat(event);
      break;
    case "chat_deleted":
      byTestId("chat-list").querySelector(`[data-event-id="${CSS.escape(event.event_id)}"]`)?.remove();
      break;
    case "likes":
      showLikes(event.total);
      break;
    case "joins":
      showJoins(event);
      break;
    case "follow":
      addNotice("follow", event.sender.name, "followed");
      break;
    case "share":
      addNotice("share", event.sender.name, "shared the live");
      break;
    case "followers":
      showFollowers(event.followers);
      break;
    case "room_end":
      showEnded();
      state.battle.roomEnded();
      break;
    case "battle":
      state.battle.update(event);
      break;
    case "battle_end":
      state.battle.end(event);
      break;
  }
}

function showConnectionState(connectionState, detail) {
  const element = byTestId("connection-state");
  element.dataset.state = connectionState;
  show(element);
  const text = {
    connecting: "Connecting…",
    open: "Live",
    reconnecting: "Reconnecting in ",
    closed: state.ended ? "Ended" : "Disconnected",
  };
  element.textContent = text[connectionState];
  if (connectionState === "reconnecting") {
    // The wait is kept on one line when the pill wraps on a phone.
    const wait = document.createElement("span");
    wait.className = "wait";
    wait.textContent = `${Math.ceil((detail.inMs ?? 0) / 1000)} s…`;
    element.append(wait);
  }
  if (connectionState === "open") clearToasts(OFFLINE_TOAST);
  if (connectionState === "reconnecting" && state.pending.size > 0) offlineToast();
  if (connectionState !== "closed") return;
  if (detail.code === 4401) {
    clearToken(ROLE);
    showSignIn();
    toast(describeError("unauthorized"), { kind: "error" });
  } else if (detail.code === 4403) {
    state.ended = true;
    setRoomDisabled(true);
    toast(describeError("banned"), { kind: "error", ms: 0, action: { label: "Find another live", run: leaveRoom } });
  } else if (detail.code === 4404 || detail.code === 4410) {
    showEnded();
  }
}

function offlineToast() {
  toast("Not connected: your gift will be sent when the connection is back.", { key: OFFLINE_TOAST, ms: 0 });
}

// ---------------------------------------------------------------- the end of the live

/** The live is over: ENDED on the badge, nothing to send any more, other lives offered. */
function showEnded(ended = true) {
  const badge = byTestId("live-badge");
  badge.textContent = ended ? "ENDED" : "LIVE";
  badge.dataset.state = ended ? "ended" : "live";
  byTestId("room").dataset.ended = String(ended);
  setRoomDisabled(ended);
  show(byTestId("ended"), ended);
  if (!ended || state.ended) {
    state.ended = ended;
    return;
  }
  state.ended = true;
  state.pending.clear();
  state.pendingChat.clear();
  clearToasts(OFFLINE_TOAST);
  openGiftSheet(false);
  byTestId("confirm-gift").close();
  const list = byTestId("other-rooms");
  const over = state.roomId;
  roomItems(over).then(
    (items) => state.roomId === over && list.replaceChildren(...(items.length ? items.slice(0, OTHER_LIVES) : [nobodyLive()])),
    () => list.replaceChildren(nobodyLive()),
  );
}

function setRoomDisabled(disabled) {
  for (const button of byTestId("gift-tray").querySelectorAll("button")) button.disabled = disabled;
  for (const id of ["chat-input", "chat-send", "open-gifts"]) byTestId(id).disabled = disabled;
  byTestId("gift-tray").dataset.disabled = String(disabled);
}

// ---------------------------------------------------------------- gifts on screen

/**
 * A gift event. Small gifts (tier 1) show one badge per sender and gift that counts up, and
 * one feed row per streak; gifts of tier 2 and 3 also get a moment of their own on the stage,
 * queued so that they play one after the other.
 */
function showGift(event) {
  addToFeed(event);
  const streakable = state.catalog.streakable(event.gift_id);
  const tier = state.catalog.tier(event.gift_id);
  if (tier >= 2) {
    state.moments.push({
      tier,
      name: event.sender.name,
      giftName: state.catalog.name(event.gift_id),
      count: event.count,
      coins: state.catalog.coins(event.gift_id) * event.count,
      badge: state.catalog.badge(event.gift_id),
    });
  }
  if (streakable) {
    // Its streak ends with one combo_end, which says it in the chat once for the whole streak.
    showCombo(event, event.combo);
  } else {
    if (tier === 1) {
      showCombo(event, event.count);
      endCombo({ ...event, combo: event.count }, SINGLE_GIFT_MS);
    }
    addNotice("gift", event.sender.name, `sent ${state.catalog.name(event.gift_id)} ×${event.count}`);
  }
}

/** The running ×N of a streak: one element per sender and gift, updated in place. */
function showCombo(event, count) {
  const list = byTestId("combos");
  const key = comboKey(event);
  let item = list.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.key = key;
    item.dataset.testid = "combo";
    const label = document.createElement("span");
    label.className = "combo-label";
    const number = document.createElement("strong");
    number.dataset.testid = "combo-count";
    item.append(state.catalog.badge(event.gift_id), label, number);
    list.append(item);
  }
  item.classList.remove("ended");
  clearTimeout(item.fadeTimer);
  // Safety net: a combo_end lost to a resync must not leave the ×N on screen forever.
  item.fadeTimer = setTimeout(() => item.remove(), STALE_COMBO_MS);
  item.children[1].textContent = `${event.sender.name} sent ${state.catalog.name(event.gift_id)}`;
  const number = item.children[2];
  number.textContent = `×${count}`;
  // Restart the "bump" animation on every new tap.
  number.classList.remove("bump");
  void number.offsetWidth;
  number.classList.add("bump");
}

function endCombo(event, lingerMs = COMBO_LINGER_MS) {
  const key = comboKey(event);
  const row = byTestId("feed").querySelector(`[data-key="${CSS.escape(key)}"][data-open="true"]`);
  if (row) {
    row.querySelector('[data-testid="feed-count"]').textContent = `×${event.combo}`;
    row.dataset.open = "false";
  }
  const item = byTestId("combos").querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) return;
  item.children[2].textContent = `×${event.combo}`;
  clearTimeout(item.fadeTimer);
  item.fadeTimer = setTimeout(() => {
    item.classList.add("ended");
    item.fadeTimer = setTimeout(() => item.remove(), COMBO_LINGER_MS);
  }, lingerMs - COMBO_LINGER_MS);
}

/** One feed row per streak (its ×N counts up in place), one per gift that makes no combo. */
function addToFeed(event) {
  const feed = byTestId("feed");
  const streakable = state.catalog.streakable(event.gift_id);
  const key = comboKey(event);
  let row = streakable ? feed.querySelector(`[data-key="${CSS.escape(key)}"][data-open="true"]`) : null;
  if (!row) {
    row = document.createElement("li");
    row.dataset.testid = "feed-row";
    row.dataset.key = key;
    row.dataset.open = String(streakable);
    const text = document.createElement("span");
    text.className = "feed-text";
    text.textContent = `${event.sender.name} sent ${state.catalog.name(event.gift_id)}`;
    const count = document.createElement("strong");
    count.dataset.testid = "feed-count";
    row.append(state.catalog.badge(event.gift_id), text, count);
    feed.prepend(row);
    while (feed.childElementCount > FEED_LENGTH) feed.lastElementChild.remove();
  }
  row.querySelector('[data-testid="feed-count"]').textContent = `×${streakable ? (event.combo ?? event.count) : event.count}`;
}

// ---------------------------------------------------------------- the gift tray

async function loadCatalog() {
  state.catalog = await GiftCatalog.load();
  renderTray(byTestId("gift-tray"), state.catalog);
  markAffordable();
  setRoomDisabled(state.ended);
}

/** Gifts that cost more than the balance are marked, to the eye and in their names. */
function markAffordable() {
  markTray(byTestId("gift-tray"), state.catalog, state.coins);
}

function openGiftSheet(open = true) {
  byTestId("gift-sheet").classList.toggle("open", open);
  byTestId("open-gifts").setAttribute("aria-expanded", String(open));
}

/**
 * One tap = one gift of count 1 with its own idempotency key; quick taps make a combo.
 * A single gift at or above the catalog's `confirm_coins` asks first (unless the viewer
 * said not to for this live). A gift the viewer can't afford goes to the server anyway,
 * which refuses it with the numbers (its balance here may be out of date).
 */
function tapGift(giftId) {
  if (state.ended) return;
  const cost = state.catalog.coins(giftId);
  const affordable = state.coins === null || cost <= state.coins;
  const asked = sessionStorage.getItem(noConfirmKey(state.roomId)) === "1";
  if (affordable && cost >= state.catalog.confirmCoins && !asked) confirmGift(giftId);
  else sendGift(giftId);
}

function confirmGift(giftId) {
  const dialog = byTestId("confirm-gift");
  const cost = state.catalog.coins(giftId);
  const name = state.catalog.name(giftId);
  byTestId("confirm-title").textContent = `Send ${name}?`;
  byTestId("confirm-text").textContent =
    `${name} costs ${formatNumber(cost)} coins. Your balance: ${formatNumber(state.coins)} coins; ` +
    `after this gift: ${formatNumber(state.coins - cost)}. Gifts can't be undone.`;
  byTestId("confirm-skip").checked = false;
  dialog.returnValue = "";
  dialog.onclose = () => {
    if (dialog.returnValue !== "send") return;
    if (byTestId("confirm-skip").checked) sessionStorage.setItem(noConfirmKey(state.roomId), "1");
    sendGift(giftId);
  };
  dialog.showModal();
}

function sendGift(giftId) {
  const frame = { type: "gift", gift_id: giftId, count: 1, idempotency_key: newIdempotencyKey() };
  state.pending.set(frame.idempotency_key, frame);
  if (!state.connection?.send(frame)) offlineToast();
}

/** After a reconnect, anything unanswered goes again with its original key. */
function resendPendingGifts() {
  for (const frame of state.pending.values()) state.connection.send(frame);
}

function handleGiftError(frame) {
  const key = frame.idempotency_key;
  const sent = key ? state.pending.get(key) : null;
  const retry = sent && RETRYABLE_GIFT_ERRORS.has(frame.code);
  if (retry) {
    // Same key, later: charged once however many times it is retried.
    setTimeout(() => state.pending.has(key) && state.connection?.send(sent), 1000);
  } else if (key) {
    state.pending.delete(key);
  }
  const giftName = sent ? state.catalog.name(sent.gift_id) : undefined;
  const text = describeGiftError(frame, giftName);
  if (typeof frame.balance === "number") showBalance(frame.balance);
  if (frame.code === "insufficient_coins" || frame.code === "negative_balance") {
    const need = typeof frame.cost === "number" && typeof frame.balance === "number" ? frame.cost - frame.balance : null;
    const run = () => openShop({ need, giftName });
    toast(text, { kind: "error", key: "gift-error", action: { label: "Buy coins", run } });
  } else if (frame.code === "daily_limit_exceeded") {
    toast(text, { kind: "error", key: "gift-error", action: { label: "Budget", run: openBudget } });
  } else if (frame.code === "room_ended") {
    showEnded();
  } else if (frame.code === "unknown_gift") {
    toast(text, { kind: "error", key: "gift-error" });
    loadCatalog();
  } else {
    toast(text, { kind: retry ? "info" : "error", key: "gift-error" });
  }
}

// ---------------------------------------------------------------- chat

function sendChat(text) {
  const frame = { type: "chat", text, client_id: newIdempotencyKey("msg") };
  state.pendingChat.set(frame.client_id, frame);
  hideChatError();
  if (!state.connection?.send(frame)) toast("Not connected: your message will be sent when the connection is back.", { key: OFFLINE_TOAST, ms: 0 });
}

function resendPendingChat() {
  for (const frame of state.pendingChat.values()) state.connection.send(frame);
}

function handleChatError(frame) {
  const sent = state.pendingChat.get(frame.client_id);
  state.pendingChat.delete(frame.client_id);
  // Give the refused text back to fix or send later, unless something new was typed.
  const input = byTestId("chat-input");
  if (sent && input.value === "") input.value = sent.text;
  if (frame.code === "room_ended") return showEnded();
  showChatError(describeChatError(frame.code, frame.message, frame.retry_after_ms), frame.code);
}

/** A refused message, said over the chat right above the input for a few seconds. */
function showChatError(text, code = "") {
  const box = byTestId("chat-error");
  box.textContent = text;
  box.dataset.code = code;
  show(box);
  clearTimeout(box.hideTimer);
  box.hideTimer = setTimeout(hideChatError, CHAT_ERROR_MS);
}

function hideChatError() {
  show(byTestId("chat-error"), false);
}

function canModerate() {
  return Boolean(state.room && state.me && (state.room.creator_id === state.me.user_id || state.moderator));
}

function addChat(event) {
  if (state.me && event.sender.id === state.me.user_id) {
    // Badges are decided per message: the latest of ours says whether we moderate now.
    state.moderator = (event.sender.badges ?? []).includes("moderator");
  }
  const item = chatItem(event);
  if (canModerate() && event.sender.id !== state.me.user_id && event.sender.id !== state.room.creator_id) {
    item.append(moderationMenu(event));
  }
  appendToChat(byTestId("chat-list"), item, CHAT_LENGTH);
}

function addNotice(kind, name, rest) {
  appendToChat(byTestId("chat-list"), noticeItem(kind, name, rest), CHAT_LENGTH);
}

/** Delete, mute 5 minutes, ban: a <details> menu, so it opens by tap or keyboard alike. */
function moderationMenu(event) {
  const menu = document.createElement("details");
  menu.className = "chat-menu";
  const summary = document.createElement("summary");
  summary.dataset.testid = "chat-menu";
  summary.setAttribute("aria-label", "Moderate this message");
  summary.textContent = "⋯";
  const actions = document.createElement("div");
  actions.className = "chat-menu-actions";
  const room = encodeURIComponent(state.roomId);
  const user = encodeURIComponent(event.sender.id);
  const action = (label, testid, path, method, body) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.dataset.testid = testid;
    button.textContent = label;
    button.addEventListener("click", async () => {
      menu.open = false;
      try {
        await api(path, { method, body, token: state.token });
        toast(`${label}: done.`, { kind: "ok", key: "moderation" });
      } catch (error) {
        toast(describeError(error.code, error.message), { kind: "error", key: "moderation" });
      }
    });
    return button;
  };
  actions.append(
    action("Delete", "moderate-delete", `/v1/rooms/${room}/chat/${encodeURIComponent(event.event_id)}`, "DELETE"),
    action("Mute 5 min", "moderate-mute", `/v1/rooms/${room}/mutes/${user}`, "PUT", { seconds: MUTE_S }),
    action("Ban", "moderate-ban", `/v1/rooms/${room}/bans/${user}`, "PUT"),
  );
  menu.append(summary, actions);
  return menu;
}

// ---------------------------------------------------------------- likes, joins, follow, share

/** A tap on the stage: a heart now, the like itself in the next batch (one frame a second). */
function tapLike(event) {
  if (!state.connection || state.ended) return;
  // Taps on the stage's own controls (the end panel, the gift sheet) are not likes.
  if (event.target.closest("button, a, input, .live-ended")) return;
  floatHeart(event);
  state.likesToSend = Math.min(MAX_LIKES_PER_FRAME, state.likesToSend + 1);
  if (state.likeTimer === null) state.likeTimer = setTimeout(flushLikes, LIKE_EVERY_MS);
}

function flushLikes() {
  state.likeTimer = null;
  if (state.likesToSend === 0) return;
  // Not connected: the taps wait for the next second (likes are not worth more than that).
  if (state.connection?.send({ type: "like", count: state.likesToSend })) state.likesToSend = 0;
  else state.likeTimer = setTimeout(flushLikes, LIKE_EVERY_MS);
}

function floatHeart(event) {
  const layer = byTestId("heart-layer");
  if (layer.childElementCount >= MAX_HEARTS) return;
  const heart = document.createElement("span");
  heart.className = reducedMotion() ? "heart still" : "heart";
  heart.textContent = "♥";
  const box = byTestId("stage").getBoundingClientRect();
  const x = event.clientX ? event.clientX - box.left : box.width * (0.6 + Math.random() * 0.3);
  const y = event.clientY ? event.clientY - box.top : box.height * 0.8;
  heart.style.left = `${x}px`;
  heart.style.top = `${y}px`;
  heart.style.setProperty("--drift", `${Math.round((Math.random() - 0.5) * 60)}px`);
  layer.append(heart);
  setTimeout(() => heart.remove(), 1300); // after its 1.2 s animation in viewer.css
}

function showLikes(total) {
  const element = byTestId("likes");
  element.textContent = formatNumber(total);
  element.dataset.likes = total;
}

function showJoins(event) {
  // Our own arrival is no news to us.
  if (event.count === 1 && event.users[0]?.id === state.me.user_id) return;
  const element = byTestId("joins");
  element.textContent = joinsText(event);
  show(element);
  clearTimeout(element.hideTimer);
  element.hideTimer = setTimeout(() => show(element, false), JOINS_MS);
}

function showFollowers(count) {
  const element = byTestId("followers");
  element.textContent = formatNumber(count);
  element.dataset.followers = count;
}

function showFollowing(following) {
  state.following = following;
  const button = byTestId("follow");
  button.textContent = following ? "Following" : "Follow";
  button.setAttribute("aria-pressed", String(following));
  button.classList.toggle("secondary", following);
}

async function loadCreator(creatorId) {
  const button = byTestId("follow");
  show(button, creatorId !== state.me.user_id);
  try {
    const creator = await api(`/v1/creators/${encodeURIComponent(creatorId)}`, { token: state.token });
    showFollowing(creator.following);
    showFollowers(creator.followers);
  } catch (error) {
    alertError(error);
  }
}

async function toggleFollow() {
  const button = byTestId("follow");
  button.disabled = true;
  try {
    const path = `/v1/creators/${encodeURIComponent(state.room.creator_id)}/follow`;
    const answer = await api(path, { method: state.following ? "DELETE" : "PUT", token: state.token });
    showFollowing(answer.following);
    showFollowers(answer.followers);
  } catch (error) {
    alertError(error);
  } finally {
    button.disabled = false;
  }
}

async function share() {
  const status = byTestId("share-state");
  try {
    await api(`/v1/rooms/${encodeURIComponent(state.roomId)}/share`, { method: "POST", token: state.token });
    status.dataset.state = "shared";
    // The link itself: a real app would open the system share sheet here.
    const copied = await navigator.clipboard?.writeText(location.href).then(() => true, () => false);
    status.textContent = copied ? "Link copied." : "Shared.";
    toast(status.textContent, { kind: "ok", key: "share" });
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
    toast(status.textContent, { kind: "error", key: "share" });
  }
}

// ---------------------------------------------------------------- wallet and purchases

/** Which provider takes web payments: "stripe" (with its publishable key) or the sandbox. */
async function loadPayments() {
  try {
    const providers = await api("/v1/payments/providers");
    if (providers?.web === "stripe" && providers.stripe) return { web: "stripe", stripe: providers.stripe };
  } catch {
    // A server without the route (or out of reach now) has only the sandbox to offer.
  }
  return { web: "sandbox", stripe: null };
}

async function refreshWallet() {
  const wallet = await api("/v1/wallet", { token: state.token });
  showBalance(wallet.coins);
  return wallet;
}

function showBalance(coins) {
  state.coins = coins;
  byTestId("balance").textContent = formatNumber(coins);
  byTestId("balance").dataset.coins = coins;
  byTestId("balance-box").setAttribute("aria-label", `Your balance: ${formatNumber(coins)} coins`);
  markAffordable();
}

/**
 * The shop: the packages of the viewer's region, in its currency. `need` (coins short of a
 * refused gift) is said at the top, and the smallest package that covers it is marked.
 */
async function openShop({ need = null, giftName = "this gift" } = {}) {
  const dialog = byTestId("shop");
  showCheckout(null);
  const shortfall = byTestId("shortfall");
  show(shortfall, need !== null && need > 0);
  shortfall.textContent = need > 0 ? `You need ${formatNumber(need)} more coins for ${giftName}.` : "";
  if (!dialog.open) dialog.showModal();
  try {
    const { region, packages } = await api(`/v1/catalog/packages?region=${encodeURIComponent(state.region)}`);
    byTestId("shop-currency").textContent = packages[0]?.price.currency ?? "";
    byTestId("shop-region").textContent = region;
    const covering = need > 0 ? packages.find((pack) => pack.coins >= need) : null;
    byTestId("packages").replaceChildren(
      ...packages.map((pack) => {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "package";
        button.dataset.testid = `package-${pack.id}`;
        const coins = document.createElement("strong");
        coins.textContent = `${formatNumber(pack.coins)} coins`;
        const price = document.createElement("span");
        price.textContent = formatMoney(pack.price.amount_minor, pack.price.currency);
        button.append(coins, price);
        if (pack === covering) {
          button.classList.add("covers");
          const note = document.createElement("em");
          note.textContent = "enough for it";
          button.append(note);
        }
        button.addEventListener("click", () => showCheckout(pack));
        return button;
      }),
    );
  } catch (error) {
    alertError(error);
  }
}

/** The checkout step of the shop (`pack`), or back to the package list (null). */
function showCheckout(pack) {
  state.checkout = pack;
  state.stripeOrder = null; // an order left unpaid here just expires
  show(byTestId("shop-packages"), pack === null);
  show(byTestId("checkout"), pack !== null);
  const status = byTestId("purchase-state");
  status.textContent = "";
  delete status.dataset.state;
  byTestId("pay").disabled = false;
  show(byTestId("pay"));
  show(byTestId("checkout-back"));
  show(byTestId("checkout-done"), false);
  if (pack === null) return;
  byTestId("checkout-coins").textContent = `${formatNumber(pack.coins)} coins`;
  byTestId("checkout-price").textContent = formatMoney(pack.price.amount_minor, pack.price.currency);
  byTestId("pay").textContent = `Pay ${formatMoney(pack.price.amount_minor, pack.price.currency)}`;
  byTestId("pay").focus();
  showPaymentMethod();
}

/** The sandbox's notice, or Stripe's card field (Pay waits until the field is there). */
async function showPaymentMethod() {
  const payments = await state.payments;
  const stripe = payments.web === "stripe";
  show(byTestId("sandbox-hint"), !stripe);
  show(byTestId("card-field"), stripe);
  if (!stripe) return;
  byTestId("card-error").textContent = "";
  if (state.stripeCard === null) {
    state.stripeCard = new StripeCard(payments.stripe, {
      onChange: (message) => {
        byTestId("card-error").textContent = message;
      },
    });
  }
  const pay = byTestId("pay");
  if (state.stripeCard.card === null) pay.disabled = true;
  try {
    await state.stripeCard.mount(byTestId("card-mount"));
    state.stripeCard.clear();
    if (!state.paying) pay.disabled = false;
  } catch {
    const status = byTestId("purchase-state");
    status.dataset.state = "failed";
    status.textContent = describeError("card_field_unavailable");
  }
}

/**
 * Paying is two steps: create an order, then pay it at the provider. The coins arrive only
 * when the provider's signed webhook reaches the server, so until the order is `paid` we
 * show "processing" and poll. (In demo mode the sandbox plays the provider.) The Pay button
 * is disabled from the first click: a double click buys once.
 */
async function pay() {
  const pack = state.checkout;
  if (pack === null || state.paying) return;
  state.paying = true;
  const status = byTestId("purchase-state");
  byTestId("pay").disabled = true;
  byTestId("checkout-back").disabled = true;
  if ((await state.payments).web === "stripe") {
    try {
      await payWithStripe(pack);
    } finally {
      byTestId("checkout-back").disabled = false;
      state.paying = false;
    }
    return;
  }
  try {
    const order = await api("/v1/purchases", { method: "POST", body: { package_id: pack.id, region: state.region }, token: state.token });
    status.dataset.state = "processing";
    status.textContent = `Processing your payment for ${formatNumber(pack.coins)} coins…`;
    await api(`/v1/sandbox/orders/${order.order_id}/pay`, { method: "POST", token: state.token });
    const final = await waitForOrder(order.order_id);
    if (final.state === "paid") {
      const wallet = await refreshWallet();
      status.dataset.state = "paid";
      status.textContent = `Paid: ${formatNumber(pack.coins)} coins added. Your balance is ${formatNumber(wallet.coins)} coins.`;
      show(byTestId("pay"), false);
      show(byTestId("checkout-back"), false);
      show(byTestId("checkout-done"));
      byTestId("checkout-done").focus();
      clearToasts("gift-error");
    } else if (final.state === "pending") {
      status.dataset.state = "processing";
      status.textContent = "Still processing. Your coins will appear as soon as the payment is confirmed.";
    } else {
      status.dataset.state = "failed";
      status.textContent = describeError("order_flagged");
    }
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
    byTestId("pay").disabled = false;
  } finally {
    byTestId("checkout-back").disabled = false;
    state.paying = false;
  }
}

async function waitForOrder(orderId, timeoutMs = 30_000, { firstWaitMs = 500, backoff = 1, longestWaitMs = 500 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let wait = firstWaitMs;
  for (;;) {
    const order = await api(`/v1/purchases/${orderId}`, { token: state.token });
    if (order.state !== "pending" || Date.now() > deadline) return order;
    await new Promise((resolve) => setTimeout(resolve, wait));
    wait = Math.min(longestWaitMs, wait * backoff);
  }
}

/**
 * Paying with Stripe: the order (with its PaymentIntent) is made on the first Pay and kept
 * for this checkout, so a declined card is tried again on the same order. Stripe.js confirms
 * the payment with the card field; Stripe's message is shown when it refuses, and Pay works
 * again. A payment Stripe took is "received": the coins arrive with Stripe's webhook, so the
 * order is polled (backing off, for two minutes at most) and the balance shown when it is paid.
 */
async function payWithStripe(pack) {
  const status = byTestId("purchase-state");
  const pay = byTestId("pay");
  // A tap before the card field is there does nothing: Pay comes back with the field.
  if (!state.stripeCard?.card) return;
  let order = state.stripeOrder;
  try {
    if (order === null) {
      const body = { package_id: pack.id, region: state.region, provider: "stripe" };
      order = await api("/v1/purchases", { method: "POST", body, token: state.token });
      state.stripeOrder = order;
    }
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
    pay.disabled = false;
    return;
  }
  status.dataset.state = "processing";
  status.textContent = `Confirming your payment of ${formatMoney(pack.price.amount_minor, pack.price.currency)} with Stripe…`;
  const result = await besideStripe(() => state.stripeCard.confirm(order.stripe.client_secret));
  if (state.checkout !== pack) return; // the buyer left this checkout meanwhile
  if (!result.received) {
    status.dataset.state = "failed";
    status.textContent = result.message;
    pay.disabled = false;
    pay.focus();
    return;
  }
  state.stripeOrder = null;
  show(pay, false);
  status.dataset.state = "received";
  status.textContent = "Payment received — your coins arrive in a moment.";
  let final = null;
  try {
    final = await waitForOrder(order.order_id, 120_000, { firstWaitMs: 500, backoff: 1.5, longestWaitMs: 5000 });
  } catch {
    // Out of reach for now: the coins still arrive; the balance shows them on the next refresh.
  }
  const wallet = final?.state === "paid" ? await refreshWallet().catch(() => null) : null;
  if (state.checkout !== pack) return;
  if (final?.state === "paid") {
    status.dataset.state = "paid";
    status.textContent = wallet
      ? `Paid: ${formatNumber(pack.coins)} coins added. Your balance is ${formatNumber(wallet.coins)} coins.`
      : `Paid: ${formatNumber(pack.coins)} coins added.`;
    show(byTestId("checkout-back"), false);
    show(byTestId("checkout-done"));
    byTestId("checkout-done").focus();
    clearToasts("gift-error");
  } else if (final !== null && final.state !== "pending") {
    status.dataset.state = "failed";
    status.textContent = describeError("order_flagged");
  } else {
    status.textContent = "Payment received. Your coins will appear as soon as Stripe confirms it.";
  }
}

/**
 * Run `confirm` with the shop out of the browser's top layer. Stripe shows 3D Secure in a
 * window of its own over the page, and nothing (whatever its z-index) can be drawn over a modal
 * dialog: the shop becomes a non-modal dialog in the same place, with the same shade behind it,
 * while Stripe confirms, and modal again afterwards.
 */
async function besideStripe(confirm) {
  const dialog = byTestId("shop");
  const focused = document.activeElement;
  dialog.classList.add("beside-stripe");
  dialog.close();
  dialog.show();
  try {
    return await confirm();
  } finally {
    const stillOpen = dialog.open; // the buyer may have closed the shop meanwhile
    dialog.close();
    dialog.classList.remove("beside-stripe");
    if (stillOpen) {
      dialog.showModal();
      if (focused instanceof HTMLElement && dialog.contains(focused)) focused.focus();
    }
  }
}

/** The region decides the packages and the currency; the server remembers it per user. */
async function saveRegion(region) {
  const select = byTestId("region");
  try {
    const me = await api("/v1/me/region", { method: "PUT", body: { region }, token: state.token });
    state.region = me.region ?? region;
    toast(`Coin prices are now in ${select.selectedOptions[0].textContent}.`, { kind: "ok", key: "region" });
    if (byTestId("shop").open) openShop();
  } catch (error) {
    select.value = state.region;
    alertError(error);
  }
}

// ---------------------------------------------------------------- daily budget

async function openBudget() {
  closeMenu();
  const dialog = byTestId("budget");
  byTestId("budget-state").textContent = "";
  if (!dialog.open) dialog.showModal();
  try {
    showBudget(await refreshWallet());
  } catch (error) {
    alertError(error);
  }
}

function showBudget(wallet) {
  byTestId("spent-today").textContent = formatNumber(wallet.spent_today);
  byTestId("budget-input").value = wallet.daily_limit ?? "";
}

async function saveBudget(dailyLimit) {
  try {
    const wallet = await api("/v1/wallet/limits", { method: "PUT", body: { daily_limit: dailyLimit }, token: state.token });
    showBudget(wallet);
    byTestId("budget-state").textContent = dailyLimit === null ? "No daily limit." : `Saved: at most ${formatNumber(dailyLimit)} coins a day.`;
  } catch (error) {
    byTestId("budget-state").textContent = describeError(error.code, error.message);
  }
}

// ---------------------------------------------------------------- notices and wiring

function alertError(error) {
  toast(describeError(error.code, error.message), { kind: "error" });
}

function closeMenu() {
  byTestId("menu").open = false;
}

function wireStaticControls() {
  for (const button of byTestId("demo-users").querySelectorAll("button")) {
    button.addEventListener("click", () => signIn(button.dataset.user));
  }
  byTestId("custom-user").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    signIn(form.get("user_id").trim(), form.get("name").trim());
  });
  byTestId("sign-out").addEventListener("click", () => {
    closeMenu();
    clearToken(ROLE);
    clearToasts();
    history.replaceState(null, "", location.pathname);
    show(byTestId("connection-state"), false);
    document.body.classList.remove("in-room");
    showSignIn();
  });
  byTestId("region").addEventListener("change", (event) => saveRegion(event.target.value));
  byTestId("refresh-rooms").addEventListener("click", showLobby);
  byTestId("leave-room").addEventListener("click", leaveRoom);
  byTestId("back-to-lobby").addEventListener("click", leaveRoom);
  byTestId("open-shop").addEventListener("click", () => openShop());
  byTestId("shop-close").addEventListener("click", () => byTestId("shop").close());
  byTestId("checkout-back").addEventListener("click", () => showCheckout(null));
  byTestId("checkout-done").addEventListener("click", () => byTestId("shop").close());
  byTestId("pay").addEventListener("click", pay);
  byTestId("open-budget").addEventListener("click", openBudget);
  byTestId("budget-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = byTestId("budget-input").value.trim();
    saveBudget(value === "" ? null : Number.parseInt(value, 10));
  });
  byTestId("budget-clear").addEventListener("click", () => saveBudget(null));
  byTestId("budget-close").addEventListener("click", () => byTestId("budget").close());
  byTestId("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byTestId("chat-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    sendChat(text);
  });
  byTestId("stage").addEventListener("click", tapLike);
  byTestId("follow").addEventListener("click", toggleFollow);
  byTestId("share").addEventListener("click", share);

  // The tray: a tap acts on the gift that was under the finger when it landed.
  wireTray(byTestId("gift-tray"), tapGift);
  // The gift sheet (phones) stays open while tapping gifts, so combos are easy; a tap
  // outside it or its close button shuts it.
  byTestId("open-gifts").addEventListener("click", () => openGiftSheet(!byTestId("gift-sheet").classList.contains("open")));
  byTestId("close-gifts").addEventListener("click", () => openGiftSheet(false));
  document.addEventListener("pointerdown", (event) => {
    const sheet = byTestId("gift-sheet");
    if (!sheet.classList.contains("open")) return;
    if (sheet.contains(event.target) || byTestId("open-gifts").contains(event.target)) return;
    if (event.target.closest("dialog, .toasts")) return;
    openGiftSheet(false);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") openGiftSheet(false);
  });
  // The menu closes on a tap elsewhere.
  document.addEventListener("pointerdown", (event) => {
    if (!byTestId("menu").contains(event.target)) closeMenu();
  });
}

start();
