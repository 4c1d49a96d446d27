// viewer.js — the viewer page: sign in (demo), pick a live, buy coins, send gifts, chat,
// like, follow and share, watch; the creator and moderators also moderate the chat here.

import { api, ApiError, byTestId, clearToken, demoSignIn, formatMoney, formatNumber, getToken, newIdempotencyKey, show, wsUrl } from "./api.js";
import { appendToChat, chatItem, joinsText, noticeItem } from "./chat.js";
import { describeChatError, describeError, RETRYABLE_GIFT_ERRORS } from "./errors.js";
import { comboKey, GiftCatalog, reducedMotion } from "./gifts.js";
import { RoomConnection } from "./live.js";
import { renderGoal, renderLeaderboard } from "./widgets.js";

const ROLE = "viewer";
const REGION = "US";
const MAX_FLYING = 24; // gifts animating at once; a storm of gifts must not melt the page
const COMBO_LINGER_MS = 1500; // how long a finished ×N stays before it fades
const FEED_LENGTH = 30;
const STALE_COMBO_MS = 15_000;
const CHAT_LENGTH = 100; // messages kept on screen
const LIKE_EVERY_MS = 1000; // at most one `like` frame per second…
const MAX_LIKES_PER_FRAME = 15; // …of 1–15 taps: the server's per-user like rate
const MAX_HEARTS = 30;
const JOINS_MS = 3000;
const MUTE_S = 300;

const state = {
  token: null,
  me: null,
  catalog: new GiftCatalog(),
  connection: null,
  roomId: null,
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
};

// ---------------------------------------------------------------- signing in (demo mode)

async function start() {
  wireStaticControls();
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
  byTestId("user-name").textContent = me.name;
  show(byTestId("sign-in"), false);
  show(byTestId("account"));
  await Promise.all([refreshWallet(), loadCatalog()]);
  const roomFromLink = new URLSearchParams(location.search).get("room");
  if (roomFromLink) joinRoom(roomFromLink);
  else showLobby();
}

// ---------------------------------------------------------------- lobby

async function showLobby() {
  show(byTestId("room"), false);
  show(byTestId("lobby"));
  const list = byTestId("rooms");
  const { rooms } = await api("/v1/rooms");
  list.replaceChildren(
    ...rooms.map((room) => {
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
      join.addEventListener("click", () => joinRoom(room.room_id));
      item.append(title, viewers, join);
      return item;
    }),
  );
  if (rooms.length === 0) list.innerHTML = `<li class="hint">Nobody is live right now.</li>`;
}

// ---------------------------------------------------------------- the room

function joinRoom(roomId) {
  state.connection?.stop();
  state.roomId = roomId;
  state.pending.clear();
  state.pendingChat.clear();
  state.likesToSend = 0;
  state.moderator = false;
  resetRoomView();
  show(byTestId("lobby"), false);
  show(byTestId("room"));
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
  byTestId("gift-layer").replaceChildren();
  hideMessage();
}

function handleFrame(frame) {
  switch (frame.type) {
    case "welcome":
      // A fresh welcome (not a resume) means: start over from this snapshot.
      if (!frame.resumed) resetRoomView();
      byTestId("room-title").textContent = frame.room.title;
      state.room = frame.room;
      applySnapshot(frame.snapshot, !frame.resumed);
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
      if (frame.client_id !== undefined) handleChatError(frame);
      else handleGiftError(frame);
      break;
    case "resync":
      // The resume window was lost (or the live restarted); a full welcome follows.
      resetRoomView();
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
      addToFeed(event);
      flyGift(event);
      // Only streakable gifts make combos; their streak always ends with one combo_end,
      // which says it in the chat once for the whole streak.
      if (state.catalog.streakable(event.gift_id)) showCombo(event);
      else addNotice("gift", event.sender.name, `sent ${state.catalog.name(event.gift_id)} ×${event.count}`);
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
      showMessage("This live has ended. Thanks for watching!", "Find another live", leaveRoom);
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
    reconnecting: `Connection lost, reconnecting in ${Math.ceil((detail.inMs ?? 0) / 1000)} s…`,
    closed: "Disconnected",
  };
  element.textContent = text[connectionState];
  if (connectionState !== "closed") return;
  if (detail.code === 4401) {
    clearToken(ROLE);
    showSignIn();
    alertError(new ApiError(401, "unauthorized", ""));
  } else if (detail.code === 4403) {
    showMessage(describeError("banned"), "Find another live", leaveRoom);
  } else if (detail.code === 4404 || detail.code === 4410) {
    showMessage("This live has ended or doesn't exist.", "Find another live", leaveRoom);
  }
}

// ---------------------------------------------------------------- animations

function flyGift(event) {
  const layer = byTestId("gift-layer");
  if (layer.childElementCount >= MAX_FLYING) return;
  const flyer = document.createElement("div");
  flyer.className = reducedMotion() ? "flyer still" : "flyer";
  flyer.style.top = `${10 + Math.random() * 55}%`;
  flyer.append(state.catalog.badge(event.gift_id), ` ${event.sender.name} ×${event.combo}`);
  layer.append(flyer);
  // Removed after its CSS animation (2.4 s in viewer.css), whichever animation ran.
  setTimeout(() => flyer.remove(), 2500);
}

/** The running ×N of a streak, updated in place by each gift event of that streak. */
function showCombo(event) {
  const list = byTestId("combos");
  const key = comboKey(event);
  let item = list.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.key = key;
    item.dataset.testid = "combo";
    item.append(state.catalog.badge(event.gift_id), document.createElement("span"), document.createElement("strong"));
    list.append(item);
  }
  item.classList.remove("ended");
  clearTimeout(item.fadeTimer);
  // Safety net: a combo_end lost to a resync must not leave the ×N on screen forever.
  item.fadeTimer = setTimeout(() => item.remove(), STALE_COMBO_MS);
  item.children[1].textContent = `${event.sender.name} sent ${state.catalog.name(event.gift_id)}`;
  const count = item.children[2];
  count.textContent = `×${event.combo}`;
  count.dataset.testid = "combo-count";
  // Restart the "bump" animation on every new tap.
  count.classList.remove("bump");
  void count.offsetWidth;
  count.classList.add("bump");
}

function endCombo(event) {
  const item = byTestId("combos").querySelector(`[data-key="${CSS.escape(comboKey(event))}"]`);
  if (!item) return;
  item.children[2].textContent = `×${event.combo}`;
  item.classList.add("ended");
  item.fadeTimer = setTimeout(() => item.remove(), COMBO_LINGER_MS);
}

function addToFeed(event) {
  const feed = byTestId("feed");
  const item = document.createElement("li");
  item.append(state.catalog.badge(event.gift_id), ` ${event.sender.name} sent ${state.catalog.name(event.gift_id)} ×${event.count}`);
  feed.prepend(item);
  while (feed.childElementCount > FEED_LENGTH) feed.lastElementChild.remove();
}

// ---------------------------------------------------------------- sending gifts

async function loadCatalog() {
  state.catalog = await GiftCatalog.load();
  const tray = byTestId("gift-tray");
  tray.replaceChildren(
    ...state.catalog.list.map((gift) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "gift";
      button.dataset.testid = `gift-${gift.id}`;
      button.title = gift.streakable ? `${gift.name}: tap again quickly for a combo` : gift.name;
      const name = document.createElement("span");
      name.textContent = gift.name;
      const price = document.createElement("span");
      price.className = "price";
      price.textContent = `${formatNumber(gift.coins)} ${gift.coins === 1 ? "coin" : "coins"}`;
      button.append(state.catalog.badge(gift.id), name, price);
      button.addEventListener("click", () => sendGift(gift.id));
      return button;
    }),
  );
}

/** One tap = one gift of count 1 with its own idempotency key; quick taps make a combo. */
function sendGift(giftId) {
  const frame = { type: "gift", gift_id: giftId, count: 1, idempotency_key: newIdempotencyKey() };
  state.pending.set(frame.idempotency_key, frame);
  if (!state.connection?.send(frame)) {
    showMessage("Not connected: your gift will be sent when the connection is back.");
  }
}

/** After a reconnect, anything unanswered goes again with its original key. */
function resendPendingGifts() {
  for (const frame of state.pending.values()) state.connection.send(frame);
}

function handleGiftError(frame) {
  const key = frame.idempotency_key;
  const retry = key && RETRYABLE_GIFT_ERRORS.has(frame.code) && state.pending.get(key);
  if (retry) {
    // Same key, later: charged once however many times it is retried.
    setTimeout(() => state.pending.has(key) && state.connection?.send(retry), 1000);
  } else if (key) {
    state.pending.delete(key);
  }
  const message = describeError(frame.code, frame.message);
  if (frame.code === "insufficient_coins" || frame.code === "negative_balance") {
    showMessage(message, "Buy coins", openShop);
  } else if (frame.code === "daily_limit_exceeded") {
    showMessage(message, "Budget", openBudget);
  } else if (frame.code === "unknown_gift") {
    showMessage(message);
    loadCatalog();
  } else {
    showMessage(message);
  }
}

// ---------------------------------------------------------------- chat

function sendChat(text) {
  const frame = { type: "chat", text, client_id: newIdempotencyKey("msg") };
  state.pendingChat.set(frame.client_id, frame);
  hideChatError();
  if (!state.connection?.send(frame)) showChatError("Not connected: your message will be sent when the connection is back.");
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
  showChatError(describeChatError(frame.code, frame.message, frame.retry_after_ms), frame.code);
}

function showChatError(text, code = "") {
  const box = byTestId("chat-error");
  box.textContent = text;
  box.dataset.code = code;
  show(box);
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
        showChatError(`${label}: done.`, "moderated");
      } catch (error) {
        showChatError(describeError(error.code, error.message), error.code);
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
  if (!state.connection) return;
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
  } catch (error) {
    status.dataset.state = "failed";
    status.textContent = describeError(error.code, error.message);
  }
}

// ---------------------------------------------------------------- wallet and purchases

async function refreshWallet() {
  const wallet = await api("/v1/wallet", { token: state.token });
  showBalance(wallet.coins);
  return wallet;
}

function showBalance(coins) {
  byTestId("balance").textContent = formatNumber(coins);
  byTestId("balance").dataset.coins = coins;
}

async function openShop() {
  const dialog = byTestId("shop");
  byTestId("purchase-state").textContent = "";
  const { packages } = await api(`/v1/catalog/packages?region=${REGION}`);
  byTestId("packages").replaceChildren(
    ...packages.map((pack) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "package";
      button.dataset.testid = `package-${pack.id}`;
      button.innerHTML = `<strong></strong><span></span>`;
      button.children[0].textContent = `${formatNumber(pack.coins)} coins`;
      button.children[1].textContent = formatMoney(pack.price.amount_minor, pack.price.currency);
      button.addEventListener("click", () => buy(pack));
      return button;
    }),
  );
  if (!dialog.open) dialog.showModal();
}

/**
 * Buying is two steps: create an order, then pay it at the provider. The coins arrive only
 * when the provider's signed webhook reaches the server, so until the order is `paid` we
 * show "processing" and poll. (In demo mode the sandbox plays the provider.)
 */
async function buy(pack) {
  const status = byTestId("purchase-state");
  const buttons = byTestId("packages").querySelectorAll("button");
  buttons.forEach((button) => (button.disabled = true));
  try {
    const order = await api("/v1/purchases", { method: "POST", body: { package_id: pack.id, region: REGION }, token: state.token });
    status.dataset.state = "processing";
    status.textContent = `Processing your payment for ${formatNumber(pack.coins)} coins…`;
    await api(`/v1/sandbox/orders/${order.order_id}/pay`, { method: "POST", token: state.token });
    const final = await waitForOrder(order.order_id);
    if (final.state === "paid") {
      await refreshWallet();
      status.dataset.state = "paid";
      status.textContent = `Done: ${formatNumber(pack.coins)} coins added.`;
      hideMessage();
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
  } finally {
    buttons.forEach((button) => (button.disabled = false));
  }
}

async function waitForOrder(orderId, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const order = await api(`/v1/purchases/${orderId}`, { token: state.token });
    if (order.state !== "pending" || Date.now() > deadline) return order;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// ---------------------------------------------------------------- daily budget

async function openBudget() {
  const wallet = await refreshWallet();
  showBudget(wallet);
  byTestId("budget-state").textContent = "";
  const dialog = byTestId("budget");
  if (!dialog.open) dialog.showModal();
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

// ---------------------------------------------------------------- messages

function showMessage(text, actionLabel = null, action = null) {
  const box = byTestId("message");
  byTestId("message-text").textContent = text;
  const button = byTestId("message-action");
  show(button, Boolean(actionLabel));
  button.textContent = actionLabel ?? "";
  button.onclick = action;
  show(box);
}

function hideMessage() {
  show(byTestId("message"), false);
}

function alertError(error) {
  showMessage(describeError(error.code, error.message));
}

// ---------------------------------------------------------------- wiring

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
    clearToken(ROLE);
    history.replaceState(null, "", location.pathname);
    show(byTestId("connection-state"), false);
    showSignIn();
  });
  byTestId("refresh-rooms").addEventListener("click", showLobby);
  byTestId("leave-room").addEventListener("click", leaveRoom);
  byTestId("open-shop").addEventListener("click", openShop);
  byTestId("open-budget").addEventListener("click", openBudget);
  byTestId("message-close").addEventListener("click", hideMessage);
  byTestId("budget-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = byTestId("budget-input").value.trim();
    saveBudget(value === "" ? null : Number.parseInt(value, 10));
  });
  byTestId("budget-clear").addEventListener("click", () => saveBudget(null));
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
  byTestId("budget-close").addEventListener("click", () => byTestId("budget").close());
}

start();
