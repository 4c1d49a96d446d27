// errors.js — a friendly sentence for every error code the server can send.
//
// The codes are stable (README's error table and docs/PROTOCOL.md); the server's own
// `message` is written for developers, so a client shows its own text to people.

import { formatNumber } from "./api.js";

const MESSAGES = {
  // Gifts (HTTP and WebSocket alike)
  insufficient_coins: "Not enough coins for this gift. Top up to keep gifting.",
  negative_balance: "Your balance is below zero after a refund or chargeback. Top up to gift again.",
  daily_limit_exceeded: "That gift would go past your daily budget. You can change the budget in Daily budget.",
  rate_limited: "You're sending gifts very fast. Retrying in a moment…",
  account_frozen: "Your account is frozen, so gifts and withdrawals are disabled. Please contact support.",
  room_ended: "This LIVE has ended.",
  self_gift: "Creators can't send gifts in their own live.",
  engine_unavailable: "The server is busy right now. Retrying…",
  invalid_request: "The app sent a request the server could not accept.",
  unknown_gift: "That gift is no longer available. The gift tray has been refreshed.",
  idempotency_mismatch: "That tap was already used for a different gift.",
  forbidden: "Your account can't do that.",
  unauthorized: "Your session has expired. Please sign in again.",
  // Rooms and purchases
  room_not_found: "That live doesn't exist any more.",
  already_live: "You are already live.",
  not_live: "You are not live right now.",
  unknown_package: "That coin package is not available.",
  unknown_region: "Coin packages are not sold in that region.",
  order_flagged: "The payment did not match the order, so no coins were added. Please contact support.",
  provider_unavailable: "Card payments are not available right now. Nothing was charged; please try again later.",
  provider_error: "The payment provider could not be reached. Nothing was charged; try again in a moment.",
  provider_mismatch: "This order is being paid another way. Go back and pick the package again.",
  // Creator money
  below_minimum_withdrawal: "That is below the minimum withdrawal.",
  insufficient_diamonds: "You don't have that many available diamonds.",
  daily_payout_cap: "That would pass today's payout limit. Try a smaller amount or tomorrow.",
  // Overlay
  overlay_not_found: "This overlay link is not valid any more. Copy the new one from the creator dashboard.",
  overlay_revoked: "This overlay link was replaced. Copy the new link from your creator dashboard.",
  // Chat and moderation
  slow_mode: "Slow mode is on.",
  links_not_allowed: "Links aren't allowed in this chat.",
  message_blocked: "That message has a word the creator blocked.",
  muted: "You are muted in this chat for now.",
  banned: "You are banned from this live.",
  moderator_not_found: "That user is not one of your moderators.",
  message_not_found: "That message is gone already.",
  // Battles
  self_battle: "You can't battle yourself: pick another creator who is live.",
  already_in_battle: "One of you is already in a battle or has an invitation open. Try again when it is over.",
  battle_lapsed: "That invitation lapsed: an invitation must be answered within 30 s.",
  battle_not_invited: "That invitation was already answered or cancelled.",
  not_found: "That no longer exists.",
  // Client side
  network_error: "The server cannot be reached. Check your connection.",
  card_field_unavailable: "The card form could not be loaded. Check your connection, then go back and pick the package again.",
};

/** The sentence to show for `code`; falls back to the server's message. */
export function describeError(code, serverMessage = "") {
  return MESSAGES[code] ?? (serverMessage || `Something went wrong (${code}).`);
}

/** A chat error: the wait comes from the error's `retry_after_ms` when it has one. */
export function describeChatError(code, serverMessage = "", retryAfterMs = null) {
  const seconds = retryAfterMs ? Math.max(1, Math.ceil(retryAfterMs / 1000)) : null;
  if (code === "slow_mode") return seconds ? `Slow mode: you can post again in ${seconds} s.` : MESSAGES.slow_mode;
  if (code === "rate_limited") return seconds ? `You're chatting very fast. Try again in ${seconds} s.` : "You're chatting very fast.";
  if (code === "muted") return seconds ? `You are muted: you can chat again in ${formatWait(seconds)}.` : MESSAGES.muted;
  if (code === "invalid_request") return serverMessage || MESSAGES.invalid_request;
  return describeError(code, serverMessage);
}

/**
 * A refused gift, with the numbers the error carries (`cost`, `balance`, `budget_left`,
 * `daily_limit`: PROTOCOL.md, "Errors"). Without them, the plain sentence.
 */
export function describeGiftError(error, giftName = "this gift") {
  const n = (value) => (typeof value === "number" ? formatNumber(value) : null);
  const cost = n(error.cost);
  if (error.code === "insufficient_coins" && cost !== null && n(error.balance) !== null) {
    const short = error.cost - error.balance;
    return `Not enough coins: ${giftName} costs ${cost} and you have ${n(error.balance)}. You need ${formatNumber(short)} more.`;
  }
  if (error.code === "daily_limit_exceeded" && cost !== null && n(error.budget_left) !== null) {
    const limit = n(error.daily_limit);
    return `Over your daily budget: ${giftName} costs ${cost} coins and ${n(error.budget_left)} are left today${limit === null ? "" : ` of your ${limit}`}. You can change the budget in Daily budget.`;
  }
  return describeError(error.code, error.message);
}

/**
 * A refused battle request (`POST /v1/battles`, accept, decline). `live` says whether the
 * caller is live, which tells which side a `not_live` is about; `opponent` is the other
 * creator's name when known.
 */
export function describeBattleError(error, { live = true, opponent = null } = {}) {
  const them = opponent ?? "That creator";
  if (error.code === "not_live") return live ? `${them} is not live any more.` : "Go LIVE first: only a creator who is live can battle.";
  if (error.code === "forbidden") return "Only creators can battle, and only the invited creator can accept.";
  if (error.code === "not_found") return "That battle no longer exists.";
  if (error.code === "already_in_battle" && opponent) return `You or ${opponent} already have a battle or an open invitation. Try again when it is over.`;
  return describeError(error.code, error.message);
}

const formatWait = (seconds) => (seconds < 120 ? `${seconds} s` : `${Math.ceil(seconds / 60)} min`);

/** Gift errors that are worth retrying later with the SAME idempotency key. */
export const RETRYABLE_GIFT_ERRORS = new Set(["rate_limited", "engine_unavailable"]);
