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

export class GiftCatalog {
  constructor(gifts = [], { tiers = null, confirm_coins = Infinity } = {}) {
    this.byId = new Map(gifts.map((gift) => [gift.id, gift]));
    this.tiers = tiers; // {moment_coins, grand_coins}: where tiers 2 and 3 start
    this.confirmCoins = confirm_coins; // a single gift from this price asks to confirm
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

  /** 1 a small gift, 2 a moment, 3 a grand moment (the catalog's `tier`). */
  tier(giftId) {
    return this.byId.get(giftId)?.tier ?? 1;
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
