// battles.js — the creator dashboard's Battle section: while LIVE, invite another creator who
// is live to a battle of 1 to 10 minutes, see the invitation wait (it lapses after 30 s),
// answer an invitation (Accept / Decline), follow the running score, and see the result.
//
// The dashboard polls `GET /v1/me/battle` every 2 s: it answers the caller's invited or
// running battle, the invitations others sent included (`inviter` is then someone else).
// When it goes back to null, `GET /v1/battles/{id}` says how that battle finished.
// Refusals are toasts with a sentence from errors.js.

import { api, byTestId, formatNumber, show } from "./api.js";
import { BattleBar, endOf, formatCountdown, resultDetails } from "./battle.js";
import { describeBattleError } from "./errors.js";
import { clearToasts, toast } from "./toast.js";

const POLL_MS = 2000;
const LAPSE_MS = 30_000; // an invitation not answered in this long lapses (the server decides)
const ROOMS_LIMIT = 200;

/** The Battle section of the dashboard; `start(token, me)` when a creator signs in, `stop()`
 * when they sign out. */
export class BattlePanel {
  constructor() {
    this.token = null;
    this.me = null;
    this.timer = null;
    this.clock = null;
    this.battle = null; // the invited or running battle, as last polled
    this.live = false;
    this.creators = "";
    this.names = new Map(); // creator id → display name
    this.quiet = new Set(); // battles this page declined or cancelled: their end is no news
    this.polling = false;
    this.bar = new BattleBar(byTestId("battle-bar"));
    byTestId("battle-accept").addEventListener("click", () => this.answer("accept"));
    byTestId("battle-decline").addEventListener("click", () => this.answer("decline"));
    byTestId("battle-cancel").addEventListener("click", () => this.answer("decline"));
  }

  start(token, me) {
    this.stop();
    this.token = token;
    this.me = me;
    this.poll();
    this.timer = setInterval(() => document.visibilityState === "visible" && this.poll(), POLL_MS);
    this.clock = setInterval(() => this.#lapse(), 250);
  }

  stop() {
    clearInterval(this.timer);
    clearInterval(this.clock);
    this.token = null;
    this.battle = null;
    this.creators = "";
    this.bar.clear();
    byTestId("battle-creators").replaceChildren();
    show(byTestId("battle-result"), false);
  }

  async poll() {
    if (!this.token || this.polling) return;
    this.polling = true;
    const token = this.token;
    try {
      const { battle } = await api("/v1/me/battle", { token });
      if (token !== this.token) return; // signed out meanwhile
      // Whether the creator is live, as the LIVE card (creator.js) last heard it.
      this.live = byTestId("live-state").dataset.live === "true";
      const before = this.battle;
      if (before && (!battle || battle.battle_id !== before.battle_id)) await this.#finished(before);
      this.#show(battle);
      if (!battle && this.live) await this.#listCreators();
    } catch (error) {
      if (error.code !== "network_error") this.#refused(error);
    } finally {
      this.polling = false;
    }
  }

  /** Invite `creator` (a creator id) with the picked length. */
  async invite(creator, name) {
    const duration = Number.parseInt(byTestId("battle-duration").value, 10);
    try {
      const battle = await api("/v1/battles", {
        method: "POST",
        body: { opponent_id: creator, duration_s: duration },
        token: this.token,
      });
      clearToasts("battle");
      show(byTestId("battle-result"), false);
      this.#show(battle);
    } catch (error) {
      this.#refused(error, name);
      this.poll();
    }
  }

  /** Accept or decline the invitation on screen (decline is also the inviter's Cancel). */
  async answer(verb) {
    const battle = this.battle;
    if (!battle) return;
    for (const id of ["battle-accept", "battle-decline", "battle-cancel"]) byTestId(id).disabled = true;
    try {
      const answer = await api(`/v1/battles/${encodeURIComponent(battle.battle_id)}/${verb}`, { method: "POST", token: this.token });
      clearToasts("battle");
      if (verb === "decline") {
        this.quiet.add(battle.battle_id);
        const mine = battle.inviter === this.me.user_id;
        toast(mine ? "Invitation cancelled." : `You declined ${this.#other(battle).name}'s battle.`, { kind: "ok", key: "battle" });
      }
      this.#show(answer.state === "invited" || answer.state === "running" ? answer : null);
      if (!this.battle && this.live) await this.#listCreators(true);
    } catch (error) {
      this.#refused(error, this.#other(battle).name);
      this.poll();
    } finally {
      for (const id of ["battle-accept", "battle-decline", "battle-cancel"]) byTestId(id).disabled = false;
    }
  }

  // ---------------------------------------------------------------- drawing

  /** The side of the battle that is not this creator. */
  #other(battle) {
    return battle.sides.find((side) => side.creator !== this.me.user_id) ?? battle.sides[1];
  }

  #show(battle) {
    this.battle = battle;
    const card = byTestId("battle-card");
    const mode = battle ? battle.state === "running" ? "running" : battle.inviter === this.me.user_id ? "sent" : "received" : this.live ? "idle" : "offline";
    card.dataset.mode = mode;
    show(byTestId("battle-offline"), mode === "offline");
    show(byTestId("battle-invite"), mode === "idle");
    show(byTestId("battle-invitation"), mode === "sent" || mode === "received");
    show(byTestId("battle-accept"), mode === "received");
    show(byTestId("battle-decline"), mode === "received");
    show(byTestId("battle-cancel"), mode === "sent");
    if (mode === "running") {
      show(byTestId("battle-result"), false);
      this.bar.setRoom(battle.sides.find((side) => side.creator === this.me.user_id)?.room_id ?? null);
      this.bar.update(battle);
    } else {
      this.bar.clear();
    }
    if (mode === "sent" || mode === "received") {
      const other = this.#other(battle);
      const minutes = formatMinutes(battle.duration_s);
      byTestId("battle-invitation-text").textContent =
        mode === "sent"
          ? `Waiting for ${other.name} to accept your ${minutes} battle…`
          : `${other.name} invites you to a ${minutes} battle.`;
      this.#lapse();
    }
  }

  /** The invitation's time left to answer. */
  #lapse() {
    const battle = this.battle;
    if (!battle || battle.state !== "invited") return;
    const left = battle.invited_ms + LAPSE_MS - Date.now();
    const element = byTestId("battle-lapse");
    const text = left > 0 ? `${Math.ceil(Math.min(left, LAPSE_MS) / 1000)} s left to answer.` : "Lapsing…";
    if (element.textContent !== text) element.textContent = text;
  }

  /** The other live creators, each with an Invite button (redrawn only when they change). */
  async #listCreators(force = false) {
    const { rooms } = await api(`/v1/rooms?limit=${ROOMS_LIMIT}`);
    const others = rooms.filter((room) => room.creator_id !== this.me.user_id);
    // The list of rooms names each creator by id: their display names come from their
    // profiles, read once each.
    const unknown = [...new Set(others.map((room) => room.creator_id))].filter((id) => !this.names.has(id));
    await Promise.all(
      unknown.map((id) =>
        api(`/v1/creators/${encodeURIComponent(id)}`).then(
          (creator) => this.names.set(id, creator.name),
          () => {},
        ),
      ),
    );
    const signature = JSON.stringify(others.map((room) => [room.creator_id, room.title, this.names.get(room.creator_id)]));
    if (!force && signature === this.creators) return;
    this.creators = signature;
    const list = byTestId("battle-creators");
    if (others.length === 0) {
      const none = document.createElement("li");
      none.className = "hint";
      none.textContent = "Nobody else is live right now.";
      list.replaceChildren(none);
      return;
    }
    list.replaceChildren(
      ...others.map((room) => {
        const name = this.names.get(room.creator_id) ?? room.creator_id;
        const item = document.createElement("li");
        item.dataset.testid = "battle-creator";
        item.dataset.creator = room.creator_id;
        const who = document.createElement("span");
        who.className = "person-name";
        who.textContent = name;
        const title = document.createElement("span");
        title.className = "hint";
        title.textContent = room.title;
        const invite = document.createElement("button");
        invite.type = "button";
        invite.className = "secondary";
        invite.dataset.testid = `battle-invite-${room.creator_id}`;
        invite.textContent = "Invite";
        invite.setAttribute("aria-label", `Invite ${name} to a battle`);
        invite.addEventListener("click", () => this.invite(room.creator_id, name));
        item.append(who, title, invite);
        return item;
      }),
    );
  }

  /** A battle left GET /v1/me/battle: how did it finish? */
  async #finished(battle) {
    let final;
    try {
      final = await api(`/v1/battles/${encodeURIComponent(battle.battle_id)}`, { token: this.token });
    } catch {
      return;
    }
    const other = this.#other(final);
    if (final.state === "ended") return this.#result(final);
    if (this.quiet.has(final.battle_id)) return;
    if (final.state === "declined") {
      const text = final.inviter === this.me.user_id ? `${other.name} declined your battle.` : `${other.name} cancelled the invitation.`;
      toast(text, { kind: "info", key: "battle" });
    } else if (final.state === "lapsed") {
      const text = final.inviter === this.me.user_id
        ? `${other.name} did not answer within 30 s: the invitation lapsed.`
        : `${other.name}'s invitation lapsed: invitations last 30 s.`;
      toast(text, { kind: "info", key: "battle" });
    }
  }

  /** The result of a finished battle, kept until the next one. */
  #result(final) {
    const box = byTestId("battle-result");
    const headline = !final.winner ? "Draw" : final.winner === this.me.user_id ? "You won!" : `${this.#other(final).name} won`;
    box.dataset.winner = final.winner ?? "";
    byTestId("battle-result-text").textContent = headline;
    const lines = resultDetails(endOf(final));
    byTestId("battle-result-details").replaceChildren(
      ...lines.map((line) => {
        const item = document.createElement("li");
        item.textContent = line;
        return item;
      }),
    );
    for (const side of final.sides) {
      const figure = byTestId(side.creator === this.me.user_id ? "battle-result-mine" : "battle-result-theirs");
      figure.textContent = formatNumber(side.score);
      figure.dataset.score = String(side.score);
    }
    show(box);
  }

  #refused(error, name = null) {
    toast(describeBattleError(error, { live: this.live, opponent: name }), { kind: "error", key: "battle" });
  }
}

function formatMinutes(seconds) {
  if (seconds % 60 === 0) return `${seconds / 60}-minute`;
  return `${formatCountdown(seconds * 1000)}`;
}
