// battle.js — a LIVE battle between two creators, as the viewer page and the overlay show it:
// one split score bar (this room's side on the left, in its own colour), both creators' names
// and scores, the time left, each side's top 3 supporters, and a winner moment at the end.
//
// The room socket brings it (docs/PROTOCOL.md, "Battles"):
//   welcome.battle   the room's running battle, or null (also on a resume)
//   battle           {battle_id, state: "running", sides: [{creator, name, room_id, score,
//                    top: [{user_id, name, coins}]}, …], ends_at, server_ms}: on accept, and
//                    again whenever a score or a side's top changes
//   battle_end       {battle_id, scores, winner (creator id, null for a draw), forfeit, mvp,
//                    sides}: once per room
// `ends_at` is the engine's clock; `server_ms` (the engine's clock when the frame was sent)
// against Date.now() corrects this device's clock, so the countdown agrees on every screen.
//
// The bar floats over its container's parent (position: absolute in the page's CSS): it
// never pushes anything, so its appearing moves nothing on the page.

import { formatNumber } from "./api.js";

export const RESULT_MS = 10_000; // the final score stays this long after battle_end
const TOP = 3;

/** "4:05": minutes and seconds left. */
export function formatCountdown(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

/** The headline of a finished battle: "Carol wins!" or "Draw". */
export function resultText(end) {
  const sides = end.sides ?? [];
  if (!end.winner) return "Draw";
  const winner = sides.find((side) => side.creator === end.winner);
  return `${winner?.name ?? end.winner} wins!`;
}

/** The lines under the headline: the score, a forfeit, each side's MVP. */
export function resultDetails(end) {
  const sides = end.sides ?? [];
  const score = (side) => end.scores?.[side.creator] ?? side.score ?? 0;
  const lines = [];
  if (sides.length === 2) {
    lines.push(`${sides[0].name} ${formatNumber(score(sides[0]))} – ${formatNumber(score(sides[1]))} ${sides[1].name}`);
  }
  if (end.forfeit) {
    const quitter = sides.find((side) => side.creator === end.forfeit);
    lines.push(`${quitter?.name ?? end.forfeit} ended their LIVE`);
  }
  for (const side of sides) {
    const mvp = end.mvp?.[side.creator];
    if (mvp) lines.push(`MVP for ${side.name}: ${mvp.name} (${formatNumber(mvp.coins)})`);
  }
  return lines;
}

/** A finished `Battle` (`GET /v1/battles/{id}`) as the `battle_end` frame it was announced
 * with: the scores, the winner, each side's MVP (its biggest supporter). */
export function endOf(battle) {
  return {
    type: "battle_end",
    battle_id: battle.battle_id,
    scores: Object.fromEntries(battle.sides.map((side) => [side.creator, side.score])),
    winner: battle.winner,
    forfeit: battle.forfeit,
    mvp: Object.fromEntries(battle.sides.map((side) => [side.creator, side.top?.[0] ?? null])),
    sides: battle.sides,
  };
}

/** The winner moment for moments.js (`playMoment`, a MomentQueue): a grand moment with the
 * headline, the score, and each side's MVP. `ms` replaces the tier's length when given. */
export function winnerMoment(end, ms = undefined) {
  const [score, ...details] = resultDetails(end);
  return { tier: 3, name: resultText(end), text: score ?? "", details, badge: trophyBadge(!end.winner), ms, battle: true };
}

/** A round badge for the winner moment, drawn like a gift's (gifts.js). */
export function trophyBadge(draw = false) {
  const badge = document.createElement("span");
  badge.className = "gift-badge";
  badge.style.setProperty("--hue", draw ? "210" : "45");
  badge.textContent = draw ? "=" : "★";
  badge.setAttribute("aria-hidden", "true");
  return badge;
}

/**
 * The bar, drawn into `container` (an empty element the page positions). Options:
 *   onOpponent(roomId, side)  makes the other creator's name a button that calls it (the
 *                             viewer page opens that room); without it the name is text
 *   onEnd(end)                called once per battle with its battle_end (the winner moment)
 */
export class BattleBar {
  constructor(container, { onOpponent = null, onEnd = null } = {}) {
    this.container = container;
    this.onOpponent = onOpponent;
    this.onEnd = onEnd;
    this.battle = null; // the latest battle frame shown
    this.roomId = null; // this room: its side is drawn on the left
    this.offsetMs = 0; // engine clock minus this device's clock
    this.ended = new Set(); // battle ids whose end was shown: a replayed battle_end plays once
    this.hideTimer = null;
    this.frame = null;
    this.#build();
    this.container.hidden = true;
  }

  #build() {
    const root = this.container;
    root.classList.add("battle");
    root.dataset.state = "idle";
    root.setAttribute("role", "group");
    root.setAttribute("aria-label", "Battle");

    const head = el("div", "battle-head");
    this.left = sideHead("left");
    this.clock = el("span", "battle-clock", "battle-countdown");
    this.clock.setAttribute("aria-live", "off");
    this.right = sideHead("right");
    head.append(this.left.root, this.clock, this.right.root);

    const track = el("div", "battle-track", "battle-track");
    this.fill = el("div", "battle-fill", "battle-fill");
    this.leftScore = el("span", "battle-score left", "battle-score-left");
    this.rightScore = el("span", "battle-score right", "battle-score-right");
    track.append(this.fill, this.leftScore, this.rightScore);

    const tops = el("div", "battle-tops");
    this.leftTop = el("ol", "battle-top left", "battle-top-left");
    this.rightTop = el("ol", "battle-top right", "battle-top-right");
    this.leftTop.setAttribute("aria-label", "Top supporters");
    this.rightTop.setAttribute("aria-label", "Top supporters");
    tops.append(this.leftTop, this.rightTop);

    // Said to screen readers when the battle starts and ends, not at every score.
    this.status = el("span", "visually-hidden", "battle-status");
    this.status.setAttribute("role", "status");
    root.replaceChildren(head, track, tops, this.status);
  }

  /** The room this bar is in; its side goes on the left. */
  setRoom(roomId) {
    if (roomId !== this.roomId) this.clear();
    this.roomId = roomId;
  }

  /** `welcome.battle` (or a room's `battle` from `GET /v1/rooms/{id}`): null means none runs. */
  welcome(battle) {
    if (battle) return this.update(battle);
    // A result on screen stays its 10 s; a running battle that a resume no longer lists
    // ended while we were away (its battle_end, if the log still has it, follows).
    if (this.container.dataset.state === "running") this.clear();
  }

  /** A `battle` frame: the running scores. */
  update(battle) {
    if (this.ended.has(battle.battle_id)) return; // a late frame after its end
    if (battle.state && battle.state !== "running") return;
    const fresh = this.battle?.battle_id !== battle.battle_id;
    this.battle = battle;
    if (typeof battle.server_ms === "number") this.offsetMs = battle.server_ms - Date.now();
    clearTimeout(this.hideTimer);
    this.#draw(battle.sides, battle.sides.map((side) => side.score));
    this.container.dataset.state = "running";
    this.container.dataset.battleId = battle.battle_id;
    this.container.hidden = false;
    if (fresh) this.status.textContent = `Battle: ${battle.sides.map((side) => side.name).join(" against ")}.`;
    this.#tick();
  }

  /** A `battle_end` frame: the final score for RESULT_MS, then the bar goes. */
  end(end) {
    if (this.ended.has(end.battle_id)) return;
    this.ended.add(end.battle_id);
    this.battle = null;
    cancelAnimationFrame(this.frame);
    const sides = end.sides ?? [];
    if (sides.length === 2) {
      this.#draw(sides, sides.map((side) => end.scores?.[side.creator] ?? side.score ?? 0));
      this.container.hidden = false;
    }
    const text = resultText(end);
    this.container.dataset.state = "ended";
    this.container.dataset.battleId = end.battle_id;
    this.container.dataset.winner = end.winner ?? "";
    // The headline is the winner moment's; the bar marks the winner's side.
    this.clock.textContent = end.winner ? "Final" : "Draw";
    this.clock.removeAttribute("aria-label");
    for (const [head, side] of [[this.left, this.leftSide], [this.right, this.rightSide]]) {
      head.root.dataset.result = !end.winner ? "draw" : side?.creator === end.winner ? "won" : "lost";
      head.win.hidden = head.root.dataset.result !== "won";
    }
    this.status.textContent = [text, ...resultDetails(end)].join(". ");
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => this.clear(), RESULT_MS);
    this.onEnd?.(end);
  }

  /**
   * The live ended. Ending a live forfeits its battle first, so the room's log brings its
   * `battle_end` before `room_end`: a bar still running here has nothing more to show.
   */
  roomEnded() {
    cancelAnimationFrame(this.frame);
    if (this.battle) this.clear();
  }

  /** Nothing shown (another room, a fresh start). */
  clear() {
    clearTimeout(this.hideTimer);
    cancelAnimationFrame(this.frame);
    this.battle = null;
    this.container.hidden = true;
    this.container.dataset.state = "idle";
    delete this.container.dataset.winner;
    for (const head of [this.left, this.right]) {
      delete head.root.dataset.result;
      head.win.hidden = true;
    }
  }

  #draw(sides, scores) {
    // This room's side on the left; another room (or none) keeps the inviter first.
    const flip = sides[1]?.room_id === this.roomId && sides[0]?.room_id !== this.roomId;
    const [left, right] = flip ? [sides[1], sides[0]] : [sides[0], sides[1]];
    const [leftScore, rightScore] = flip ? [scores[1], scores[0]] : [scores[0], scores[1]];
    this.leftSide = left;
    this.rightSide = right;
    this.#head(this.left, left, leftScore, false);
    this.#head(this.right, right, rightScore, left.room_id === this.roomId && Boolean(this.onOpponent));
    const total = leftScore + rightScore;
    // Width, animated by CSS; the right side is the track itself, so nothing else moves.
    this.fill.style.width = `${total === 0 ? 50 : (leftScore / total) * 100}%`;
    setScore(this.leftScore, leftScore, left);
    setScore(this.rightScore, rightScore, right);
    renderTop(this.leftTop, left.top ?? [], left);
    renderTop(this.rightTop, right.top ?? [], right);
  }

  #head(head, side, score, linked) {
    head.root.dataset.creator = side.creator;
    head.root.dataset.roomId = side.room_id;
    head.root.dataset.score = String(score);
    if (linked) {
      if (!head.button) {
        head.button = document.createElement("button");
        head.button.type = "button";
        head.button.className = "battle-opponent";
        head.button.dataset.testid = "battle-opponent";
        head.button.addEventListener("click", (event) => {
          event.stopPropagation(); // not a like on the stage under it
          const roomId = head.root.dataset.roomId;
          if (roomId) this.onOpponent(roomId, this.rightSide);
        });
      }
      head.button.textContent = side.name;
      head.button.setAttribute("aria-label", `Open ${side.name}'s LIVE`);
      head.name.replaceChildren(head.button);
    } else {
      head.name.textContent = side.name;
    }
  }

  /** The time left, redrawn on every animation frame while the battle runs (its text only
   * when the second changes). */
  #tick() {
    cancelAnimationFrame(this.frame);
    const step = () => {
      if (!this.battle) return;
      const left = this.battle.ends_at - (Date.now() + this.offsetMs);
      const text = formatCountdown(left);
      if (this.clock.textContent !== text) {
        this.clock.textContent = text;
        this.clock.dataset.msLeft = String(Math.max(0, left));
        this.clock.setAttribute("aria-label", `${text} left`);
      }
      this.frame = requestAnimationFrame(step);
    };
    step();
  }
}

function el(tag, className, testid = null) {
  const element = document.createElement(tag);
  element.className = className;
  if (testid) element.dataset.testid = testid;
  return element;
}

function sideHead(where) {
  const root = el("div", `battle-side ${where}`, `battle-side-${where}`);
  const name = el("span", "battle-name", `battle-name-${where}`);
  const win = el("span", "battle-win", `battle-win-${where}`);
  win.textContent = "WIN";
  win.hidden = true;
  if (where === "left") root.append(name, win);
  else root.append(win, name);
  return { root, name, win, button: null };
}

function setScore(element, score, side) {
  element.textContent = formatNumber(score);
  element.dataset.score = String(score);
  element.setAttribute("aria-label", `${side.name}: ${formatNumber(score)} points`);
}

function renderTop(list, top, side) {
  list.setAttribute("aria-label", `${side.name}'s top supporters`);
  list.replaceChildren(
    ...top.slice(0, TOP).map((supporter) => {
      const item = el("li", "battle-supporter", "battle-supporter");
      item.dataset.userId = supporter.user_id;
      item.dataset.coins = String(supporter.coins);
      const name = el("span", "battle-supporter-name");
      name.textContent = supporter.name;
      const coins = el("span", "battle-supporter-coins");
      coins.textContent = formatNumber(supporter.coins);
      item.append(name, coins);
      return item;
    }),
  );
}
