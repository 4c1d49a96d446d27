// gifts.js — the gift catalog and how each gift looks on screen.
//
// The catalog's `animation` field names an effect; a client maps it to its own artwork.
// This demo uses a text symbol and a colour per animation, and a generic sparkle for
// anything it doesn't know (admins can add gifts at any time).

import { api } from "./api.js";

const LOOKS = {
  "rose-float": { symbol: "✿", hue: 345 },
  "heart-pop": { symbol: "♥", hue: 330 },
  "perfume-mist": { symbol: "❈", hue: 280 },
  "doughnut-spin": { symbol: "◎", hue: 30 },
  "hand-hearts": { symbol: "❤", hue: 355 },
  "corgi-run": { symbol: "☻", hue: 40 },
  "money-gun": { symbol: "$", hue: 120 },
  "galaxy-swirl": { symbol: "✹", hue: 255 },
  "whale-dive": { symbol: "≈", hue: 200 },
  "lion-roar": { symbol: "♌", hue: 45 },
  "universe-bigbang": { symbol: "☄", hue: 265 },
};
const UNKNOWN_LOOK = { symbol: "✦", hue: 50 };

/** The catalog's defaults (`GIFTING_MOMENT_COINS`, `GIFTING_GRAND_MOMENT_COINS`,
 * `GIFTING_CONFIRM_COINS`), used when an answer leaves them out. */
export const DEFAULT_TIERS = { moment_coins: 1000, grand_coins: 10000 };
export const DEFAULT_CONFIRM_COINS = 1000;

export class GiftCatalog {
  constructor(gifts = [], { tiers = DEFAULT_TIERS, confirm_coins = DEFAULT_CONFIRM_COINS } = {}) {
    this.byId = new Map(gifts.map((gift) => [gift.id, gift]));
    this.tiers = { ...DEFAULT_TIERS, ...tiers };
    this.confirmCoins = confirm_coins;
  }

  /** `GET /v1/catalog/gifts`: {gifts: [{id, name, coins, streakable, animation, tier}],
   * tiers: {moment_coins, grand_coins}, confirm_coins}. */
  static async load() {
    const answer = await api("/v1/catalog/gifts");
    return new GiftCatalog(answer.gifts, answer);
  }

  get list() {
    return [...this.byId.values()];
  }

  /** The gift's display name; events only carry its id. */
  name(giftId) {
    return this.byId.get(giftId)?.name ?? giftId;
  }

  /** Unknown gifts count as not streakable: each is its own alert. */
  streakable(giftId) {
    return this.byId.get(giftId)?.streakable ?? false;
  }

  coins(giftId) {
    return this.byId.get(giftId)?.coins ?? 0;
  }

  /** 1 a small gift, 2 a moment, 3 a grand moment: the catalog's `tier`, or else the
   * thresholds applied to the coins. */
  tier(giftId) {
    const gift = this.byId.get(giftId);
    if (!gift) return 1;
    if (gift.tier) return gift.tier;
    if (gift.coins >= this.tiers.grand_coins) return 3;
    return gift.coins >= this.tiers.moment_coins ? 2 : 1;
  }

  look(giftId) {
    return LOOKS[this.byId.get(giftId)?.animation] ?? UNKNOWN_LOOK;
  }

  /** A round coloured badge with the gift's symbol. */
  badge(giftId, className = "gift-badge") {
    const { symbol, hue } = this.look(giftId);
    const badge = document.createElement("span");
    badge.className = className;
    badge.style.setProperty("--hue", hue);
    badge.textContent = symbol;
    badge.setAttribute("aria-hidden", "true");
    return badge;
  }
}

/** True when the user asked the system for less motion: show and fade, never fly. */
export const reducedMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;

/** One streak is one sender sending one gift: the key under which its ×N is shown. */
export const comboKey = (event) => `${event.sender.id}|${event.gift_id}`;
