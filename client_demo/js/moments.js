// moments.js — big gifts get a moment of their own: a full-stage animation with the
// sender's name, played one at a time so that none is lost or drawn over another.
//
// Tiers come from the catalog (`GET /v1/catalog/gifts`: each gift's `tier`, and the coin
// thresholds in `tiers`): 1 is a small gift (a combo badge, no moment), 2 a moment
// (≥ `moment_coins`, about 3 s), 3 a grand moment (≥ `grand_coins`, about 6 s: the stage
// dims, rays turn and sparks burst). Everything is the Web Animations API on plain
// elements: no library, nothing fetched. With prefers-reduced-motion the moment fades in,
// stays and fades out, and nothing moves.

import { reducedMotion } from "./gifts.js";

export const MOMENT_MS = { 2: 3000, 3: 6000 };
const SPARKS = 18;

/** Plays queued items one at a time: `play(item)` answers a promise that settles when the
 * item is done. Beyond `max` waiting items the oldest waiting one of the lowest `rank(item)`
 * is dropped (a counter says how many), so a storm can't make the queue lag for minutes,
 * and a storm of small items never pushes out a big one. */
export class SerialQueue {
  constructor(play, { max = 50, rank = () => 0 } = {}) {
    this.play = play;
    this.max = max;
    this.rank = rank;
    this.waiting = [];
    this.busy = false;
    this.dropped = 0;
  }

  get length() {
    return this.waiting.length;
  }

  push(item) {
    this.waiting.push(item);
    while (this.waiting.length > this.max) {
      const ranks = this.waiting.map((waiting) => this.rank(waiting));
      this.waiting.splice(ranks.indexOf(Math.min(...ranks)), 1);
      this.dropped += 1;
    }
    if (!this.busy) this.next();
  }

  clear() {
    this.waiting.length = 0;
  }

  async next() {
    const item = this.waiting.shift();
    if (item === undefined) {
      this.busy = false;
      return;
    }
    this.busy = true;
    try {
      await this.play(item);
    } catch (error) {
      console.warn("a queued moment failed to play", error);
    }
    this.next();
  }
}

/** A queue of gift moments drawn in `layer` (an element covering the stage). Each moment is
 * { tier, name, giftName, count, coins, badge, ms? } where badge is an element
 * (GiftCatalog.badge) and `ms`, if given, replaces the tier's MOMENT_MS. A moment that is
 * not a gift (a battle's winner) gives `text` instead of the gift's "sent …" line, and
 * `details`, lines under it. */
export class MomentQueue extends SerialQueue {
  constructor(layer, { max = 50, scale = 1 } = {}) {
    super((moment) => playMoment(layer, moment, scale), { max });
  }
}

/** One moment in `layer`; resolves when it has left the screen. */
export async function playMoment(layer, moment, scale = 1) {
  const tier = moment.tier >= 3 ? 3 : 2;
  const duration = moment.ms ?? MOMENT_MS[tier];
  const still = reducedMotion();

  const root = document.createElement("div");
  root.className = `moment tier-${tier}`;
  root.dataset.testid = "moment";
  root.dataset.tier = String(tier);
  root.setAttribute("role", "status");
  if (scale !== 1) root.style.setProperty("--moment-scale", String(scale));

  const card = document.createElement("div");
  card.className = "moment-card";
  const badge = moment.badge;
  badge.classList.add("moment-badge");
  const name = document.createElement("span");
  name.className = "moment-name";
  name.dataset.testid = "moment-name";
  name.textContent = moment.name;
  const what = document.createElement("span");
  what.className = "moment-gift";
  what.dataset.testid = "moment-gift";
  if (moment.text !== undefined) what.textContent = moment.text;
  else what.textContent = moment.count > 1 ? `sent ${moment.giftName} ×${moment.count}` : `sent ${moment.giftName}`;
  card.append(badge, name, what);
  for (const line of moment.details ?? []) {
    const detail = document.createElement("span");
    detail.className = "moment-detail";
    detail.dataset.testid = "moment-detail";
    detail.textContent = line;
    card.append(detail);
  }

  if (tier === 3) {
    const rays = document.createElement("div");
    rays.className = "moment-rays";
    rays.setAttribute("aria-hidden", "true");
    root.append(rays);
    if (!still) {
      rays.animate([{ transform: "rotate(0turn)" }, { transform: "rotate(0.5turn)" }], { duration, easing: "linear" });
    }
  }
  root.append(card);
  layer.append(root);

  const fade = still ? 250 : 400;
  // The layer fades; only the card grows and shrinks (the `scale` property, which composes
  // with the card's own --moment-scale), so nothing ever reaches past the stage's edges.
  const fades = [{ opacity: 0 }, { opacity: 1, offset: fade / duration }, { opacity: 1, offset: 1 - fade / duration }, { opacity: 0 }];
  const shown = root.animate(fades, { duration, easing: "ease-out", fill: "forwards" });
  if (!still) {
    card.animate(
      [
        { scale: "0.6" },
        { scale: "1.08", offset: 0.08 },
        { scale: "1", offset: 0.14 },
        { scale: "1", offset: 1 - fade / duration },
        { scale: "1.15" },
      ],
      { duration, easing: "ease-out", fill: "forwards" },
    );
  }
  if (tier === 3 && !still) burst(root, duration);
  if (!still) {
    badge.animate(
      [{ transform: "translateY(0)" }, { transform: "translateY(-8%)" }, { transform: "translateY(0)" }],
      { duration: 900, iterations: Math.floor(duration / 900), easing: "ease-in-out" },
    );
  }
  try {
    await shown.finished;
  } finally {
    root.remove();
  }
}

/** Sparks flying out from the middle of a grand moment. */
function burst(root, duration) {
  for (let i = 0; i < SPARKS; i += 1) {
    const spark = document.createElement("span");
    spark.className = "moment-spark";
    spark.setAttribute("aria-hidden", "true");
    root.append(spark);
    const angle = (i / SPARKS) * 2 * Math.PI;
    const reach = 34 + (i % 3) * 8; // in % of the stage's smaller side
    const delay = (i % 6) * 180;
    spark.animate(
      [
        { transform: "translate(-50%, -50%) scale(0.2)", opacity: 0 },
        { opacity: 1, offset: 0.2 },
        {
          transform: `translate(calc(-50% + ${Math.cos(angle) * reach}vmin), calc(-50% + ${Math.sin(angle) * reach}vmin)) scale(1)`,
          opacity: 0,
        },
      ],
      { duration: 1400, delay, iterations: Math.max(1, Math.floor((duration - delay) / 1600)), easing: "ease-out" },
    );
  }
}
