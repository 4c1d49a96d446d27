// video.js — the page of a video (/v/{video_id}): its title, creator and link, the coins
// gifted on it and its top gifters, and the viewer page's gift tray (tray.js). Gifts go over
// HTTP (POST /v1/videos/{id}/gifts) with one idempotency key per tap; a refusal is a toast,
// as on the viewer page, and the video's figures are read again after each gift.

import { api, byTestId, clearToken, demoSignIn, formatNumber, getToken, newIdempotencyKey, show } from "./api.js";
import { describeError, describeGiftError, RETRYABLE_GIFT_ERRORS } from "./errors.js";
import { GiftCatalog } from "./gifts.js";
import { clearToasts, toast } from "./toast.js";
import { markAffordable, renderTray, wireTray } from "./tray.js";
import { renderLeaderboard } from "./widgets.js";

const ROLE = "viewer"; // the same demo sign-in as the viewer page, so one tab is one user
const RETRY_MS = 1000;
const videoId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");

const state = {
  token: null,
  me: null,
  coins: null,
  catalog: new GiftCatalog(),
  video: null,
};

/** The page appears at once when everything it shows is known: nothing moves as it loads. */
async function start() {
  wireControls();
  state.token = getToken(ROLE);
  const [video, , account] = await Promise.all([loadVideo(), loadCatalog(), state.token ? loadAccount() : null]);
  if (video === null) return;
  show(byTestId("video"));
  show(byTestId("gifters"));
  if (account === null) showSignIn();
  else signedIn(account);
}

/** The signed-in user and their wallet, or null if the token is no longer good. */
async function loadAccount() {
  try {
    const [me, wallet] = await Promise.all([api("/v1/me", { token: state.token }), api("/v1/wallet", { token: state.token })]);
    return { me, wallet };
  } catch {
    clearToken(ROLE);
    state.token = null;
    return null;
  }
}

// ---------------------------------------------------------------- the video

/** Read the video and fill in its figures; null (and the "doesn't exist" card) if there is none. */
async function loadVideo() {
  try {
    const video = await api(`/v1/videos/${encodeURIComponent(videoId)}`);
    showVideo(video);
    return video;
  } catch (error) {
    if (error.code === "not_found" || error.code === "invalid_request") {
      show(byTestId("video"), false);
      show(byTestId("gifters"), false);
      show(byTestId("video-missing"));
      show(byTestId("gifts"), false);
      show(byTestId("sign-in"), false);
      return null;
    }
    toast(describeError(error.code, error.message), { kind: "error" });
    return null;
  }
}

function showVideo(video) {
  state.video = video;
  document.title = `${video.title} — Gifting demo`;
  byTestId("video-title").textContent = video.title;
  byTestId("video-creator").textContent = video.creator.name;
  byTestId("video-link").href = video.url;
  const coins = byTestId("video-coins");
  coins.textContent = formatNumber(video.coins);
  coins.dataset.coins = video.coins;
  const leaders = video.top_gifters.map((gifter) => ({ id: gifter.user_id, name: gifter.name, coins: gifter.coins }));
  renderLeaderboard(byTestId("top-gifters"), leaders);
  show(byTestId("no-gifters"), leaders.length === 0);
}

// ---------------------------------------------------------------- signing in (demo mode)

function showSignIn() {
  byTestId("account").dataset.signedIn = "false";
  show(byTestId("gifts"), false);
  show(byTestId("sign-in"));
}

async function signIn(userId, name = null) {
  try {
    state.token = await demoSignIn(ROLE, userId, name || null);
    const account = await loadAccount();
    if (account !== null) signedIn(account);
  } catch (error) {
    toast(describeError(error.code, error.message), { kind: "error" });
  }
}

function signedIn({ me, wallet }) {
  state.me = me;
  show(byTestId("sign-in"), false);
  byTestId("account").dataset.signedIn = "true";
  show(byTestId("gifts"));
  showBalance(wallet.coins);
}

function showBalance(coins) {
  state.coins = coins;
  byTestId("balance").textContent = formatNumber(coins);
  byTestId("balance").dataset.coins = coins;
  byTestId("balance-box").setAttribute("aria-label", `Your balance: ${formatNumber(coins)} coins`);
  markAffordable(byTestId("gift-tray"), state.catalog, coins);
}

// ---------------------------------------------------------------- gifts

async function loadCatalog() {
  state.catalog = await GiftCatalog.load();
  renderTray(byTestId("gift-tray"), state.catalog);
  markAffordable(byTestId("gift-tray"), state.catalog, state.coins);
}

/** A single gift at or above the catalog's `confirm_coins` asks first, as on the viewer page. */
function tapGift(giftId) {
  const cost = state.catalog.coins(giftId);
  const affordable = state.coins === null || cost <= state.coins;
  if (affordable && cost >= state.catalog.confirmCoins) confirmGift(giftId);
  else sendGift(giftId, newIdempotencyKey());
}

function confirmGift(giftId) {
  const dialog = byTestId("confirm-gift");
  const cost = state.catalog.coins(giftId);
  const name = state.catalog.name(giftId);
  byTestId("confirm-title").textContent = `Send ${name}?`;
  byTestId("confirm-text").textContent =
    `${name} costs ${formatNumber(cost)} coins. Your balance: ${formatNumber(state.coins)} coins; ` +
    `after this gift: ${formatNumber(state.coins - cost)}. Gifts can't be undone.`;
  dialog.returnValue = "";
  dialog.onclose = () => dialog.returnValue === "send" && sendGift(giftId, newIdempotencyKey());
  dialog.showModal();
}

/** One gift, with its key: a retry of a refused-for-now gift reuses it, so it is charged once. */
async function sendGift(giftId, key) {
  const body = { gift_id: giftId, count: 1, idempotency_key: key };
  try {
    const outcome = await api(`/v1/videos/${encodeURIComponent(videoId)}/gifts`, { method: "POST", body, token: state.token });
    showBalance(outcome.coins);
    clearToasts("gift-error");
  } catch (error) {
    giftRefused(error, giftId, key);
  }
  await loadVideo();
}

function giftRefused(error, giftId, key) {
  const giftName = state.catalog.name(giftId);
  const details = { ...error.details, code: error.code, message: error.message };
  if (typeof details.balance === "number") showBalance(details.balance);
  if (RETRYABLE_GIFT_ERRORS.has(error.code)) {
    toast(describeGiftError(details, giftName), { kind: "info", key: "gift-error" });
    setTimeout(() => sendGift(giftId, key), Math.max(RETRY_MS, (error.retryAfterS ?? 0) * 1000));
  } else if (error.code === "insufficient_coins" || error.code === "negative_balance") {
    const run = () => location.assign("/"); // the viewer page sells coins
    toast(describeGiftError(details, giftName), { kind: "error", key: "gift-error", action: { label: "Buy coins", run } });
  } else if (error.code === "self_gift") {
    toast("Creators can't send gifts on their own video.", { kind: "error", key: "gift-error" });
  } else if (error.code === "unauthorized") {
    clearToken(ROLE);
    showSignIn();
    toast(describeError(error.code), { kind: "error" });
  } else {
    toast(describeGiftError(details, giftName), { kind: "error", key: "gift-error" });
    if (error.code === "unknown_gift") loadCatalog();
  }
}

// ---------------------------------------------------------------- wiring

function wireControls() {
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
    clearToasts();
    state.token = null;
    state.coins = null;
    markAffordable(byTestId("gift-tray"), state.catalog, null);
    showSignIn();
  });
  wireTray(byTestId("gift-tray"), tapGift);
}

start();
