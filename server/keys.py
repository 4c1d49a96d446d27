"""The Redis key schema: every key the server reads or writes is built here.

Each key carries a hash tag so that every Lua script touches a single cluster slot:
``{u:<user>}`` holds a user's wallet, ledger, idempotency keys, outbox, orders and,
for creators, earnings; ``{r:<room>}`` holds a room with its event stream, leaderboard,
combos and presence; ``{b:<battle>}`` holds one battle between two lives (its scores, supporters
and the gifts it counted); ``{v:<video>}`` holds a video's record, its top gifters and its
exactly-once guard; ``{o:<order>}`` and ``{p:<payment>}``
are small pointers that route a webhook to its owner's slot; ``{ip:<address>}`` holds one
client address's request rate. Ids are validated before they reach a key (see
``domain.ids``), and addresses are normalised (``domain.limits``), so none can contain a brace.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserKeys:
    """Keys in one user's slot."""

    tag: str

    @property
    def wallet(self) -> str:
        """HASH coins, daily_limit, spent_day, spent, frozen (1 while an admin froze the user)."""
        return f"{self.tag}:wallet"

    @property
    def ledger(self) -> str:
        """STREAM of coin movements: kind, delta, balance, ref, ts (+ kind-specific fields)."""
        return f"{self.tag}:ledger"

    def idempotency(self, key: str) -> str:
        """STRING fingerprint and stored answer of a gift, expires after a day."""
        return f"{self.tag}:idem:{key}"

    @property
    def outbox(self) -> str:
        """HASH gift_event_id -> creator credit not yet applied (empty hashes vanish)."""
        return f"{self.tag}:outbox"

    @property
    def gift_rate(self) -> str:
        """HASH tokens, ts: the sender's gift rate token bucket (expires when full again)."""
        return f"{self.tag}:rate"

    @property
    def connections(self) -> str:
        """ZSET connection slot id -> expiry (unix ms): the user's open WebSocket connections
        on every process, each kept alive by the process holding it."""
        return f"{self.tag}:conns"

    def order(self, order_id: str) -> str:
        """HASH of one purchase order of this user."""
        return f"{self.tag}:order:{order_id}"

    @property
    def pending_orders(self) -> str:
        """ZSET order id -> when it expires (unix ms): the user's unpaid orders, counted against
        their cap; the set expires with the latest of them."""
        return f"{self.tag}:orders:pending"

    @property
    def profile(self) -> str:
        """HASH name, role."""
        return f"{self.tag}:profile"

    @property
    def earnings(self) -> str:
        """HASH a creator's diamonds: pending, available, reserved, withdrawn, reversed, lifetime;
        payout_day and payout_today_minor for the daily payout cap."""
        return f"{self.tag}:earnings"

    @property
    def earnings_ledger(self) -> str:
        """STREAM of diamond movements of a creator."""
        return f"{self.tag}:earnings:ledger"

    @property
    def holds(self) -> str:
        """ZSET gift event id -> when its diamonds leave the hold (unix ms): pending credits."""
        return f"{self.tag}:holds"

    @property
    def held(self) -> str:
        """HASH gift event id -> diamonds still pending for it."""
        return f"{self.tag}:held"

    @property
    def lives(self) -> str:
        """HASH room id -> diamonds a creator earned in that live."""
        return f"{self.tag}:lives"

    @property
    def video_earnings(self) -> str:
        """HASH video id -> diamonds a creator earned from gifts on that video (``lives`` holds
        the gifts of lives only)."""
        return f"{self.tag}:video_earnings"

    @property
    def videos(self) -> str:
        """ZSET video id -> when it was published (unix ms): a creator's videos."""
        return f"{self.tag}:videos"

    @property
    def reversed(self) -> str:
        """SET of gift event ids whose credit was reversed (or refused) after a chargeback."""
        return f"{self.tag}:reversed"

    @property
    def clawable(self) -> str:
        """LIST "ts|cost|creator|event" of this buyer's gifts no clawback took back yet, newest
        first; gifts older than the clawback window (plus an hour) leave it, and it expires
        that long after the last gift (``gift_debit.lua``, ``claw_back.lua``)."""
        return f"{self.tag}:clawable"

    @property
    def reversals(self) -> str:
        """HASH gift event id -> creator id: credit reversals a clawback queued, not yet applied."""
        return f"{self.tag}:reversals"

    def withdrawal(self, withdrawal_id: str) -> str:
        """HASH of one withdrawal of this creator."""
        return f"{self.tag}:wd:{withdrawal_id}"

    def withdrawal_key(self, idempotency_key: str) -> str:
        """STRING withdrawal id a withdrawal idempotency key was used for."""
        return f"{self.tag}:wdkey:{idempotency_key}"

    @property
    def overlay(self) -> str:
        """STRING the creator's current overlay token."""
        return f"{self.tag}:overlay"

    @property
    def credited(self) -> str:
        """SET of gift event ids already credited to this creator (exactly-once guard)."""
        return f"{self.tag}:credited"

    @property
    def live_room(self) -> str:
        """STRING id of the creator's live room, if any."""
        return f"{self.tag}:live"

    @property
    def battle(self) -> str:
        """STRING id of the creator's battle while it is invited or running (``battle_claim.lua``):
        one battle at a time; it expires by itself if its battle's end never released it."""
        return f"{self.tag}:battle"

    @property
    def chat_rate(self) -> str:
        """HASH tokens, ts: the user's chat rate token bucket (expires when full again)."""
        return f"{self.tag}:chat:rate"

    @property
    def chat_settings(self) -> str:
        """HASH a creator's chat rules: slow_mode_s, blocked_words (JSON list), allow_links."""
        return f"{self.tag}:chat:settings"

    @property
    def moderators(self) -> str:
        """SET of the user ids a creator appointed moderators of their lives."""
        return f"{self.tag}:moderators"

    @property
    def bans(self) -> str:
        """SET of the user ids a creator banned from all of their lives."""
        return f"{self.tag}:bans"

    @property
    def banned_by(self) -> str:
        """SET of the creator ids that banned this user: the gift path reads it beside the
        room, in the same round trip (``store.moderation``)."""
        return f"{self.tag}:banned_by"

    @property
    def moderation_log(self) -> str:
        """STREAM of the moderation actions on a creator's lives (capped), newest last."""
        return f"{self.tag}:modlog"

    @property
    def followers(self) -> str:
        """ZSET follower id -> when the follow began (engine ms): a creator's followers, the
        truth of the follower count (``follow.lua``, ``unfollow.lua``)."""
        return f"{self.tag}:followers"

    @property
    def followers_version(self) -> str:
        """STRING counter bumped by every follow and unfollow that changes the creator's
        followers: orders the counts copied into the creator's live rooms."""
        return f"{self.tag}:followers:v"

    @property
    def following(self) -> str:
        """ZSET creator id -> 0 (ordered by id): the creators this user follows, a mirror of
        the creators' follower sets that may hold extra entries after a crash, never miss one
        (``social.py``)."""
        return f"{self.tag}:following"


@dataclass(frozen=True)
class RoomKeys:
    """Keys in one room's slot: everything a live room's scripts touch."""

    tag: str

    @property
    def info(self) -> str:
        """HASH creator_id, title, state (live|ended), epoch, created_ms, ended_ms, goal, coins,
        likes (the live's like total, room_likes.lua); followers and followers_v: the creator's
        follower count as of that version; summary: the live's figures, kept as it ends
        (JSON, _room_summary.lua); battle: the battle running in this live (room_battle.lua)."""
        return f"{self.tag}:room"

    @property
    def events(self) -> str:
        """STREAM of room events (gift, combo_end, goal_set, room_end, follow, share, and each
        hub process's per-tick like and join ``tally``); bounded; the resume log."""
        return f"{self.tag}:events"

    @property
    def top(self) -> str:
        """ZSET sender id -> coins gifted in this live (the leaderboard)."""
        return f"{self.tag}:top"

    @property
    def names(self) -> str:
        """HASH user id -> display name of everyone who gifted in this live."""
        return f"{self.tag}:names"

    @property
    def combos(self) -> str:
        """HASH sender id -> "gift_id|combo|last_ts" of each open combo."""
        return f"{self.tag}:combos"

    @property
    def published(self) -> str:
        """SET of gift event ids already published into this room (exactly-once guard)."""
        return f"{self.tag}:published"

    @property
    def presence(self) -> str:
        """HASH hub node id -> "viewers:expires_ms" (expiring presence)."""
        return f"{self.tag}:presence"

    @property
    def chat(self) -> str:
        """STREAM of the live's last chat messages, each under its id in ``events`` (capped,
        for the welcome); it expires a day after the last message."""
        return f"{self.tag}:chat"

    def chat_message(self, sender_id: str, client_id: str) -> str:
        """STRING "fingerprint|event id" of a chat message by its sender's client id (the
        message's idempotency record), expires after a day."""
        return f"{self.tag}:chat:msg:{sender_id}:{client_id}"

    def chat_slow(self, sender_id: str) -> str:
        """STRING set when the user last chatted here under slow mode; its remaining time to
        live tells how long ago (``chat_post.lua``)."""
        return f"{self.tag}:chat:slow:{sender_id}"

    @property
    def chat_ids(self) -> str:
        """HASH chat event id -> its offset in ``events`` ("d" once deleted): which messages a
        delete can find (``chat_post.lua``, ``chat_delete.lua``)."""
        return f"{self.tag}:chat:ids"

    @property
    def chat_ids_old(self) -> str:
        """HASH: ``chat_ids`` as it was when it last filled up (a room's log length of ids),
        so that the ids of the last one to two logs' worth of messages are kept."""
        return f"{self.tag}:chat:ids:old"

    def mute(self, user_id: str) -> str:
        """STRING set while the user is muted in this live; expires when the mute ends."""
        return f"{self.tag}:mute:{user_id}"

    @property
    def tallies(self) -> str:
        """HASH hub node id -> sequence number of its last like and join tally written here
        (room_likes.lua), so that a tally sent again after an unknown outcome counts once."""
        return f"{self.tag}:tallies"

    @property
    def followed(self) -> str:
        """SET of user ids whose follow this live already announced (once per user per live)."""
        return f"{self.tag}:followed"

    @property
    def shared(self) -> str:
        """SET of user ids whose share this live already announced (once per user per live)."""
        return f"{self.tag}:shared"

    @property
    def battles(self) -> str:
        """ZSET battle id -> when it was invited (engine ms): the live's battles, registered
        before each can start, so a gift's delivery finds the battle its debit fell in."""
        return f"{self.tag}:battles"

    @property
    def battle_ends(self) -> str:
        """ZSET battle id -> the latest its window can end (engine ms), narrowed as it starts
        and ends (``room_battle.lua``): a gift debited after it makes no battle call."""
        return f"{self.tag}:battle:ends"

    @property
    def battle_events(self) -> str:
        """SET "start:<battle>" / "end:<battle>": the battle events already in this room's log
        (``room_battle.lua``), so each goes in once."""
        return f"{self.tag}:battle:events"

    @property
    def wake(self) -> str:
        """Shard channel (not a key): every script that adds room events publishes an empty
        message on it, so that hubs on a cluster read the room only when it has news
        (``store.wakeups``)."""
        return f"{self.tag}:wake"


@dataclass(frozen=True)
class BattleKeys:
    """Keys in one battle's slot: its record, the gifts it counted and each side's supporters."""

    tag: str

    @property
    def info(self) -> str:
        """HASH inviter, opponent, room_0, room_1, name_0, name_1, state (invited, running,
        ended, declined), duration_ms, invited_ms, started_ms, ends_at, ended_ms, score_0,
        score_1, v (bumped by every score), winner, forfeit, final_0, final_1."""
        return f"{self.tag}:battle"

    @property
    def scored(self) -> str:
        """SET of gift event ids this battle counted (exactly-once guard)."""
        return f"{self.tag}:scored"

    def top(self, side: int) -> str:
        """ZSET supporter id -> coins they gave side 0 (the inviter) or 1 (the opponent)."""
        return f"{self.tag}:top:{side}"

    @property
    def names(self) -> str:
        """HASH supporter id -> display name."""
        return f"{self.tag}:names"

    @property
    def settling(self) -> str:
        """STRING held (expiring) by the process settling the battle's end (``server.battles``)."""
        return f"{self.tag}:settling"


@dataclass(frozen=True)
class VideoKeys:
    """Keys in one video's slot: its record and the totals its gifts add up to."""

    tag: str

    @property
    def info(self) -> str:
        """HASH creator_id, title, url, created_ms, coins (the coins of every gift on it)."""
        return f"{self.tag}:video"

    @property
    def top(self) -> str:
        """ZSET sender id -> coins gifted on this video (its top gifters)."""
        return f"{self.tag}:top"

    @property
    def names(self) -> str:
        """HASH user id -> display name of everyone who gifted on this video."""
        return f"{self.tag}:names"

    @property
    def published(self) -> str:
        """SET of gift event ids already added to this video (exactly-once guard)."""
        return f"{self.tag}:published"


@dataclass(frozen=True)
class KeySchema:
    """Builds every key under one prefix, so several deployments can share an engine."""

    prefix: str = "gifting:"

    def user(self, user_id: str) -> UserKeys:
        return UserKeys(f"{self.prefix}{{u:{user_id}}}")

    def room(self, room_id: str) -> RoomKeys:
        return RoomKeys(f"{self.prefix}{{r:{room_id}}}")

    def battle(self, battle_id: str) -> BattleKeys:
        return BattleKeys(f"{self.prefix}{{b:{battle_id}}}")

    @property
    def battles_due(self) -> str:
        """ZSET running battle id -> when its end is due (engine ms, its settle time
        included): what every process's battle clock watches (``server.battles``)."""
        return f"{self.prefix}battles:due"

    @property
    def battle_pattern(self) -> str:
        """SCAN pattern matching every battle's record (the audit)."""
        return f"{self.prefix}{{b:*}}:battle"

    def video(self, video_id: str) -> VideoKeys:
        return VideoKeys(f"{self.prefix}{{v:{video_id}}}")

    @property
    def live_rooms(self) -> str:
        """ZSET of live room ids scored by start time (listing only, never on the gift path)."""
        return f"{self.prefix}rooms:live"

    def withdrawal_owner(self, withdrawal_id: str) -> str:
        """STRING creator id owning a withdrawal, so an admin action finds the creator's slot."""
        return f"{self.prefix}{{w:{withdrawal_id}}}:owner"

    @property
    def withdrawals(self) -> str:
        """ZSET "<creator>:<withdrawal>" by request time (the admin listing only)."""
        return f"{self.prefix}withdrawals"

    @property
    def admin_log(self) -> str:
        """STREAM of admin actions: actor, action, target, details, ts."""
        return f"{self.prefix}admin:log"

    @property
    def demo_seed_lock(self) -> str:
        """STRING lock token, held while one process creates the demo data (``demo.py``)."""
        return f"{self.prefix}demo:seed"

    @property
    def catalog(self) -> str:
        """HASH gift id -> JSON of gifts added or changed by admins (over the shipped catalog)."""
        return f"{self.prefix}catalog:gifts"

    @property
    def catalog_version(self) -> str:
        """STRING counter bumped on each catalog change, so every process reloads it."""
        return f"{self.prefix}catalog:version"

    def overlay_owner(self, token: str) -> str:
        """STRING creator id an overlay token belongs to (removed when it is regenerated)."""
        return f"{self.prefix}{{ot:{token}}}:creator"

    def client_rate(self, address: str) -> str:
        """HASH tokens, ts: one client address's request token bucket (expires when full again)."""
        return f"{self.prefix}{{ip:{address}}}:rate"

    def order_owner(self, order_id: str) -> str:
        """STRING user id owning an order, so a webhook finds the owner's slot."""
        return f"{self.prefix}{{o:{order_id}}}:owner"

    def payment_claim(self, payment_id: str) -> str:
        """STRING order id a provider payment id was first seen for."""
        return f"{self.prefix}{{p:{payment_id}}}:order"

    def order_revoked(self, order_id: str) -> str:
        """STRING, set when a provider refunded an order's transaction before anyone submitted
        it (App Store), so that its earlier signed copy is refused, or voided it (Google Play),
        so that its token is refused; no expiry."""
        return f"{self.prefix}{{o:{order_id}}}:revoked"

    def notification_claim(self, provider: str, notification_id: str) -> str:
        """STRING, set once a provider's notification (App Store: its notificationUUID) was
        handled (Google Play: its Pub/Sub messageId), so a redelivery or a replay changes nothing
        (expires after 30 days)."""
        return f"{self.prefix}{{n:{provider}:{notification_id}}}:seen"

    def fence(self, key: str) -> str:
        """STRING written in the slot of ``key`` (which must carry a hash tag) so that WAIT
        can confirm the slot's earlier writes reached the replicas (``store.replication``);
        it expires after a minute."""
        return f"{key[: key.index('}') + 1]}:fence"

    @property
    def outbox_pattern(self) -> str:
        """SCAN pattern matching every user's outbox."""
        return f"{self.prefix}{{u:*}}:outbox"

    @property
    def reversals_pattern(self) -> str:
        """SCAN pattern matching every user's queue of credit reversals."""
        return f"{self.prefix}{{u:*}}:reversals"

    def user_id_of(self, key: str) -> str:
        """The user id in a ``{u:<user>}`` key."""
        start = len(self.prefix) + len("{u:")
        return key[start : key.index("}", start)]
