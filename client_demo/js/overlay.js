// overlay.js — the streamer's OBS overlay: gift alerts by tier, follows, shares and like
// milestones, running combos, top gifters, the goal bar, and optionally the chat.
//
// The page's URL holds the creator's overlay token (/overlay/<token>). The token is
// read-only: it opens the overlay socket of the creator's current live and nothing else.
// The overlay outlives any one live: when the creator is not live it keeps retrying, so
// the OBS scene can stay open for days. When the creator regenerates the link, the server
// closes this socket (an `error` overlay_revoked, then close 4401) and the overlay stops
// for good and says so.
//
// URL parameters (an unknown or out-of-range value falls back to its default, and a
// notice says so for 5 s):
//   position     top-left|top|top-right|center|bottom-left|bottom|bottom-right: where
//                alerts show (default top)
//   scale        0.5–2: the size of alerts and moments (default 1)
//   min_coins    N: a gift alert only for a combo or gift worth at least N coins (default 1)
//   widgets      comma list of alerts,combos,top,goal,chat (default alerts,combos,top,goal);
//                chat=1 also adds the chat
//   sound        1: a short chime per alert, longer and richer by tier (default off)
//   likes_every  N: an alert at every N likes of the live (default none)
//
// Gift tiers come from the catalog (`tier` of each gift): tier 1 is the pill alert, tier 2
// a moment, tier 3 a grand moment (moments.js). All alerts share one queue: one at a time,
// nothing drawn over another. A battle with another creator's live shows its score bar at
// the top (battle.js), and its winner as a grand moment in that same queue.

import { api, byTestId, formatNumber, show, wsUrl } from "./api.js";
import { BattleBar, winnerMoment } from "./battle.js";
import { appendToChat, chatItem } from "./chat.js";
import { describeError } from "./errors.js";
import { comboKey, GiftCatalog } from "./gifts.js";
import { RoomConnection } from "./live.js";
import { playMoment, SerialQueue } from "./moments.js";
import { toast } from "./toast.js";
import { renderGoal, renderLeaderboard } from "./widgets.js";

// The stage is laid out at this width and scaled to the window's: a landscape stage for a
// 16:9 scene, a narrower one (bigger type) for a vertical stream or a phone.
const LANDSCAPE_WIDTH = 1920;
const PORTRAIT_WIDTH = 720;
const ALERT_MS = 3500; // on screen, plus 250 ms in and 250 ms out: at most 4 s per alert
const BUSY_ALERT_MS = 1500; // shorter while alerts queue up, so the overlay never lags far behind
const BUSY_QUEUE = 3;
const MAX_QUEUE = 50; // beyond this, the oldest waiting alerts of the lowest tier are dropped
const FADE_MS = 250;
// How long a moment stays on the overlay: a tier-2 gift outlasts a small one's alert.
const MOMENT_MS = { 2: 5000, 3: 8000 };
const STALE_COMBO_MS = 15_000;
const CHAT_LENGTH = 8; // messages on screen in the chat widget
const NOTICE_MS = 5000;
// Badges of the alerts that are not gifts: a symbol and a hue, as gifts.js draws a gift.
const SOCIAL_LOOKS = { follow: ["+", 190], share: ["↗", 140], likes: ["♥", 345] };

const POSITIONS = ["top-left", "top", "top-right", "center", "bottom-left", "bottom", "bottom-right"];
const WIDGETS = ["alerts", "combos", "top", "goal", "chat"];
const DEFAULTS = { position: "top", scale: 1, minCoins: 1, widgets: ["alerts", "combos", "top", "goal"], sound: false, likesEvery: 0 };

/** The overlay's settings from its URL; `problems` lists each value that fell back. */
function readOptions(params) {
  const options = { ...DEFAULTS, widgets: new Set(DEFAULTS.widgets), problems: [] };
  const refuse = (name, value, fallback) => options.problems.push(`${name}=${value} (using ${fallback})`);
  const wholeNumber = (value) => (/^\d{1,9}$/.test(value) ? Number(value) : null);

  const position = params.get("position");
  if (position !== null) {
    if (POSITIONS.includes(position)) options.position = position;
    else refuse("position", position, DEFAULTS.position);
  }
  const scale = params.get("scale");
  if (scale !== null) {
    const value = /^\d+(\.\d+)?$/.test(scale.trim()) ? Number(scale) : NaN;
    if (value >= 0.5 && value <= 2) options.scale = value;
    else refuse("scale", scale, DEFAULTS.scale);
  }
  const minCoins = params.get("min_coins");
  if (minCoins !== null) {
    const value = wholeNumber(minCoins);
    if (value !== null) options.minCoins = value;
    else refuse("min_coins", minCoins, DEFAULTS.minCoins);
  }
  const widgets = params.get("widgets");
  if (widgets !== null) {
    const asked = widgets.split(",").map((name) => name.trim()).filter(Boolean);
    const unknown = asked.filter((name) => !WIDGETS.includes(name));
    if (asked.length === 0 || unknown.length === asked.length) refuse("widgets", widgets, DEFAULTS.widgets.join(","));
    else {
      options.widgets = new Set(asked.filter((name) => WIDGETS.includes(name)));
      if (unknown.length) refuse("widgets", unknown.join(","), "the others");
    }
  }
  if (params.get("chat") === "1") options.widgets.add("chat");
  const sound = params.get("sound");
  if (sound !== null) {
    if (sound === "1" || sound === "0") options.sound = sound === "1";
    else refuse("sound", sound, "off");
  }
  const likesEvery = params.get("likes_every");
  if (likesEvery !== null) {
    const value = wholeNumber(likesEvery);
    if (value !== null && value > 0) options.likesEvery = value;
    else refuse("likes_every", likesEvery, "no like alerts");
  }
  return options;
}

const OPTIONS = readOptions(new URLSearchParams(location.search));
const shows = (widget) => OPTIONS.widgets.has(widget);

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
const state = {
  catalog: new GiftCatalog(),
  creatorName: "the creator",
  connection: null,
  likes: null,
  revoked: false,
};
// When too many wait, small alerts are dropped first: a big gift's moment is never lost.
const alerts = new SerialQueue(playAlert, { max: MAX_QUEUE, rank: (alert) => alert.tier });
const sound = OPTIONS.sound ? openAudio() : null;
const battle = new BattleBar(byTestId("battle"), { onEnd: (end) => pushAlert({ kind: "battle", tier: 3, end }) });

async function start() {
  const stage = byTestId("overlay-stage");
  stage.dataset.position = OPTIONS.position;
  stage.style.setProperty("--alert-scale", String(OPTIONS.scale));
  fitStage();
  window.addEventListener("resize", fitStage);
  show(byTestId("chat-widget"), shows("chat"));
  show(byTestId("live-combos"), shows("combos"));
  if (OPTIONS.problems.length) {
    toast(`Overlay settings not understood: ${OPTIONS.problems.join("; ")}.`, { kind: "info", ms: NOTICE_MS, key: "options" });
  }
  try {
    const [catalog, info] = await Promise.all([GiftCatalog.load(), api(`/v1/overlay/${encodeURIComponent(token)}`)]);
    state.catalog = catalog;
    state.creatorName = info.creator.name;
  } catch (error) {
    if (error.code === "overlay_not_found") return revoke();
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

/** 1, 2 or 3: the catalog's tier for the gift (by its coins; the server sets the bounds). */
const giftTier = (giftId) => state.catalog.byId.get(giftId)?.tier ?? 1;

/** Lay the stage out at its width and scale it to fill the browser source. */
function fitStage() {
  const stage = byTestId("overlay-stage");
  const portrait = window.innerWidth < window.innerHeight;
  const width = portrait ? PORTRAIT_WIDTH : LANDSCAPE_WIDTH;
  const scale = window.innerWidth / width;
  stage.classList.toggle("portrait", portrait);
  stage.style.width = `${width}px`;
  stage.style.height = `${window.innerHeight / scale}px`;
  stage.style.transform = `scale(${scale})`;
}

function handleFrame(frame) {
  if (state.revoked) return;
  switch (frame.type) {
    case "welcome":
      if (!frame.resumed) clearLiveCombos();
      // Loaded at start, unless the server was down then: the catalog says what can streak.
      if (state.catalog.byId.size === 0) GiftCatalog.load().then((catalog) => (state.catalog = catalog), () => {});
      renderSnapshot(frame.snapshot);
      battle.setRoom(frame.room_id ?? frame.room?.room_id ?? null);
      battle.welcome(frame.battle ?? null);
      // Milestones count from here: the ones passed before the overlay opened are old news.
      state.likes = frame.snapshot.likes ?? 0;
      if (shows("chat") && !frame.resumed) {
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
    case "battle":
    case "battle_end":
      handleEvent(frame);
      break;
    case "error":
      if (frame.code === "not_live") showStatus("waiting", `Waiting for ${state.creatorName} to go live…`);
      // The link was regenerated (or never was good): stop here, for good.
      else if (frame.code === "overlay_revoked" || frame.code === "unauthorized") revoke();
      break;
  }
}

function handleEvent(event) {
  switch (event.type) {
    case "gift":
      if (state.catalog.streakable(event.gift_id)) updateLiveCombo(event);
      // A gift that can't streak never gets a combo_end: it is its own alert.
      else giftAlert(event);
      break;
    case "combo_end":
      removeLiveCombo(event);
      giftAlert(event);
      break;
    case "test_alert": // sent by the creator's "Test alert" button; only overlays get it
      giftAlert(event, { test: true });
      break;
    case "follow":
      socialAlert("follow", event.sender.name, "followed");
      break;
    case "share":
      socialAlert("share", event.sender.name, "shared the live");
      break;
    case "likes":
      likeMilestones(event.total);
      break;
    case "chat":
      if (shows("chat")) appendToChat(byTestId("chat-list"), chatItem(event), CHAT_LENGTH);
      break;
    case "chat_deleted":
      byTestId("chat-list").querySelector(`[data-event-id="${CSS.escape(event.event_id)}"]`)?.remove();
      break;
    case "leaderboard":
      renderTop(event.leaderboard);
      break;
    case "goal":
      renderGoal(byTestId("goal"), event);
      show(byTestId("goal"), shows("goal") && event.target !== null);
      break;
    case "battle":
      battle.update(event);
      break;
    case "battle_end":
      battle.end(event);
      break;
    case "room_end":
      // The next live is a new room with a new event log: don't try to resume this one.
      state.connection.forgetPosition();
      clearLiveCombos();
      battle.roomEnded();
      show(byTestId("top-gifters-panel"), false);
      show(byTestId("goal"), false);
      byTestId("chat-list").replaceChildren();
      state.likes = null;
      break;
  }
}

function renderSnapshot(snapshot) {
  renderTop(snapshot.leaderboard);
  renderGoal(byTestId("goal"), snapshot.goal);
  show(byTestId("goal"), shows("goal") && snapshot.goal.target !== null);
}

function renderTop(leaders) {
  renderLeaderboard(byTestId("top-gifters"), leaders, 5);
  show(byTestId("top-gifters-panel"), shows("top") && leaders.length > 0);
}

function handleState(connectionState, detail) {
  if (state.revoked) return;
  if (connectionState === "open") return showStatus("open", "");
  if (connectionState === "reconnecting" && detail.code === 1000) state.connection.forgetPosition();
  // Keep the "waiting for the live" text while retrying after not_live.
  const status = byTestId("connection-state");
  if (connectionState === "reconnecting" && status.dataset.state === "waiting") return;
  if (connectionState === "reconnecting") showStatus("reconnecting", "Reconnecting…");
  else if (connectionState === "connecting" && status.dataset.state === "idle") showStatus("connecting", "Connecting…");
  // Closed for good only on 4401: the token is no longer the creator's overlay link.
  else if (connectionState === "closed") revoke();
}

function showStatus(name, text) {
  const status = byTestId("connection-state");
  status.dataset.state = name;
  status.textContent = text;
}

/** The link was replaced: stop at once, show nothing more but how to get the new one. */
function revoke() {
  if (state.revoked) return;
  state.revoked = true;
  state.connection?.stop();
  alerts.clear();
  show(byTestId("alert"), false);
  byTestId("moments").replaceChildren();
  clearLiveCombos();
  battle.clear();
  for (const widget of ["top-gifters-panel", "goal", "chat-widget"]) show(byTestId(widget), false);
  showStatus("revoked", describeError("overlay_revoked"));
}

// ---------------------------------------------------------------- running combos

function updateLiveCombo(event) {
  if (!shows("combos")) return;
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

/** One alert per finished combo (or unstreakable gift, or test alert), if it is worth
 * min_coins. A test alert always shows: it is how the creator checks the scene. */
function giftAlert(event, { test = false } = {}) {
  const coins = state.catalog.byId.get(event.gift_id)?.coins;
  const worth = coins === undefined ? null : coins * event.combo;
  if (!test && worth !== null && worth < OPTIONS.minCoins) return;
  pushAlert({ kind: "gift", tier: giftTier(event.gift_id), name: event.sender.name, giftId: event.gift_id, count: event.combo, coins: worth });
}

/** A follow, a share or a like milestone: the same queue as the gifts. */
function socialAlert(kind, name, verb) {
  pushAlert({ kind, tier: 1, name, verb });
}

/** One alert for each multiple of `likes_every` the like total passed. */
function likeMilestones(total) {
  const before = state.likes;
  state.likes = total;
  if (!OPTIONS.likesEvery || before === null) return;
  const reached = Math.floor(total / OPTIONS.likesEvery);
  // A burst of likes can pass several milestones in one tick: the highest one is the news.
  if (reached > Math.floor(before / OPTIONS.likesEvery)) {
    socialAlert("likes", `${formatNumber(reached * OPTIONS.likesEvery)} likes`, "Thank you!");
  }
}

function pushAlert(alert) {
  if (shows("alerts") && !state.revoked) alerts.push(alert);
}

/** Plays one alert (the queue calls it, one at a time); resolves when it has gone. */
async function playAlert(next) {
  if (state.revoked) return;
  chime(next.tier);
  if (next.kind === "battle") return playMoment(byTestId("moments"), winnerMoment(next.end, MOMENT_MS[3]), OPTIONS.scale);
  if (next.kind === "gift" && next.tier >= 2) {
    const moment = {
      tier: next.tier,
      name: next.name,
      giftName: state.catalog.name(next.giftId),
      count: next.count,
      coins: next.coins,
      badge: state.catalog.badge(next.giftId),
      ms: MOMENT_MS[next.tier],
    };
    return playMoment(byTestId("moments"), moment, OPTIONS.scale);
  }
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
  show(alert, !state.revoked);
  await sleep(alerts.length >= BUSY_QUEUE ? BUSY_ALERT_MS : ALERT_MS);
  alert.classList.add("leaving"); // CSS fades it out (or not, with reduced motion)
  await sleep(FADE_MS);
  show(alert, false);
}

function socialBadge(kind) {
  const [symbol, hue] = SOCIAL_LOOKS[kind];
  const badge = document.createElement("span");
  badge.className = "gift-badge";
  badge.textContent = symbol;
  badge.style.setProperty("--hue", String(hue));
  badge.setAttribute("aria-hidden", "true");
  return badge;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- sound (?sound=1)

// Each chime is a few notes (frequency in Hz, start and length in s), louder by tier.
const CHIMES = {
  1: { peak: 0.12, notes: [[1318.5, 0, 0.18], [1760, 0.09, 0.3]] },
  2: { peak: 0.2, notes: [[1046.5, 0, 0.35], [1318.5, 0.12, 0.4], [1568, 0.24, 0.7]] },
  3: {
    peak: 0.28,
    notes: [[523.25, 0, 0.5], [659.25, 0.12, 0.5], [784, 0.24, 0.5], [1046.5, 0.36, 1.6], [1318.5, 0.36, 1.6], [1568, 0.36, 1.8]],
  },
};

/** An AudioContext for the chimes: synthesized, nothing is fetched. */
function openAudio() {
  try {
    return new AudioContext();
  } catch {
    return null; // no Web Audio: the overlay stays silent
  }
}

function chime(tier) {
  if (!sound) return;
  try {
    // A browser may refuse to play before a gesture (OBS does not): then stay silent.
    sound.resume().catch(() => {});
    const { peak, notes } = CHIMES[tier] ?? CHIMES[1];
    const now = sound.currentTime + 0.02;
    for (const [frequency, at, length] of notes) {
      const tone = sound.createOscillator();
      tone.type = tier === 3 ? "triangle" : "sine";
      tone.frequency.value = frequency;
      const gain = sound.createGain();
      gain.gain.setValueAtTime(0.0001, now + at);
      gain.gain.exponentialRampToValueAtTime(peak, now + at + 0.015);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + at + length);
      tone.connect(gain).connect(sound.destination);
      tone.start(now + at);
      tone.stop(now + at + length + 0.05);
    }
  } catch {
    // Sound is a nicety: never let it stop an alert.
  }
}

start();
