"""Follows and shares in the engine: a creator's followers, the creators a user follows, and
what a live room announces of them.

A follow touches three slots, each with its own call: the follower's list of creators
(``{u:F}:following``), the creator's follower set (``{u:C}:followers``, the truth of the
count, with a version bumped by every change) and, while the creator is live, the room
(``{r:R}``: its copy of the count and its once-per-live announcements). ``social.py``
orders those calls; each one here is a single script or command in one slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from server.errors import NotFound
from server.keys import KeySchema, RoomKeys, UserKeys
from server.store.rooms import room_refusals
from server.store.scripts import (
    CREATOR_CARD,
    FOLLOW,
    ROOM_FOLLOW,
    ROOM_SHARE,
    UNFOLLOW,
    Arguments,
    Refusals,
    ScriptRunner,
    outcome,
)


@dataclass(frozen=True)
class FollowChange:
    """What a follow or unfollow left in the creator's slot."""

    changed: bool  # the follow began (or ended) with this call
    followers: int
    version: int
    live_room_id: str | None
    since_ms: int | None = None  # a follow: when it began, now or earlier


@dataclass(frozen=True)
class CreatorCard:
    """A creator as their public profile shows them, read at one instant."""

    creator_id: str
    name: str
    followers: int
    version: int
    following: bool
    live_room_id: str | None


class Social:
    def __init__(self, redis: Redis, keys: KeySchema, runner: ScriptRunner, stream_len: int) -> None:
        self._redis = redis
        self._keys = keys
        self._runner = runner
        self._stream_len = stream_len

    async def follow(self, creator_id: str, follower_id: str) -> FollowChange:
        """Add the follower to the creator's set (once); ``creator_not_found`` if the user is
        not a creator."""
        reply = await self._runner.call(FOLLOW, *follow_arguments(self._keys.user(creator_id), follower_id))
        _, added, followers, version, since, live = outcome(
            FOLLOW, reply, ("ok",), _creator_refusals(creator_id)
        )
        return FollowChange(
            changed=int(added) == 1,
            followers=int(followers),
            version=int(version),
            since_ms=int(float(since)),
            live_room_id=live or None,
        )

    async def unfollow(self, creator_id: str, follower_id: str) -> FollowChange:
        """Remove the follower from the creator's set; ``creator_not_found`` if the user is
        not a creator."""
        reply = await self._runner.call(UNFOLLOW, *follow_arguments(self._keys.user(creator_id), follower_id))
        _, removed, followers, version, live = outcome(
            UNFOLLOW, reply, ("ok",), _creator_refusals(creator_id)
        )
        return FollowChange(
            changed=int(removed) == 1,
            followers=int(followers),
            version=int(version),
            live_room_id=live or None,
        )

    async def list_creator(self, user_id: str, creator_id: str) -> None:
        """Put the creator on the user's list of creators followed (idempotent)."""
        await self._redis.zadd(self._keys.user(user_id).following, {creator_id: 0})

    async def unlist_creator(self, user_id: str, creator_id: str) -> None:
        await self._redis.zrem(self._keys.user(user_id).following, creator_id)

    async def card(self, creator_id: str, caller_id: str | None) -> CreatorCard:
        """The creator's name, follower count (with its version), whether ``caller_id``
        follows them and their live room id as recorded; ``creator_not_found`` if the user
        is not a creator."""
        reply = await self._runner.call(
            CREATOR_CARD, *creator_card_arguments(self._keys.user(creator_id), caller_id)
        )
        role, name, followers, version, following, live = reply
        if role != "creator":
            raise _not_creator(creator_id)
        return CreatorCard(
            creator_id=creator_id,
            name=name or creator_id,
            followers=int(followers),
            version=int(version),
            following=int(following) == 1,
            live_room_id=live or None,
        )

    async def went_live(self, creator_id: str, room_id: str) -> None:
        """Record that the user is a creator, and give their new live room the follower
        count. Called once the creator's live-room pointer is set: a follow from then on
        updates the room itself, and one before it is in the count read here."""
        await self._redis.hset(self._keys.user(creator_id).profile, "role", "creator")
        card = await self.card(creator_id, None)
        await self.tell_room(room_id, card.followers, card.version)

    async def tell_room(
        self,
        room_id: str,
        followers: int,
        version: int,
        follower_id: str = "",
        name: str = "",
        since_ms: int | None = None,
    ) -> bool:
        """Copy the follower count into the live room (a newer version wins), and with
        ``since_ms`` announce the follow if it began during this live and was not announced
        yet; True if announced now. A room that ended meanwhile is left as it is."""
        reply = await self._runner.call(
            ROOM_FOLLOW,
            *room_follow_arguments(
                self._keys.room(room_id),
                follower_id,
                name,
                followers,
                version,
                since_ms,
                self._stream_len,
            ),
        )
        # A room that ended (or is gone) keeps what it was last told.
        outcome(ROOM_FOLLOW, reply, ("ok", "ended", "missing"), {})
        return reply[0] == "ok" and int(reply[1]) == 1

    async def share(self, room_id: str, user_id: str, name: str) -> bool:
        """Announce the user's share of a live room, once per live; True if announced now."""
        reply = await self._runner.call(
            ROOM_SHARE, *room_share_arguments(self._keys.room(room_id), user_id, name, self._stream_len)
        )
        _, counted = outcome(ROOM_SHARE, reply, ("ok",), room_refusals(room_id))
        return int(counted) == 1

    async def following(
        self, user_id: str, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], str | None]:
        """The creators the user follows (id, name), by id after ``after``, and the cursor of
        the next page (None at the end).

        The user's list may hold a creator no longer followed (a crash between an unfollow's
        two writes, or before a follow's second): each entry is checked against the
        creator's follower set and left out if it is not there, so a page may be shorter
        than ``limit``. Entries are not removed here, since a follow in flight writes the
        list first.
        """
        ids: list[str] = await self._redis.zrangebylex(
            self._keys.user(user_id).following, f"({after}" if after else "-", "+", start=0, num=limit + 1
        )
        page, more = ids[:limit], len(ids) > limit
        async with self._redis.pipeline(transaction=False) as pipe:
            for creator_id in page:
                pipe.zscore(self._keys.user(creator_id).followers, user_id)
                pipe.hget(self._keys.user(creator_id).profile, "name")
            replies = await pipe.execute()
        creators = [
            (creator_id, name or creator_id)
            for creator_id, since, name in zip(page, replies[::2], replies[1::2], strict=True)
            if since is not None
        ]
        return creators, page[-1] if more else None


def _not_creator(creator_id: str) -> NotFound:
    return NotFound(f"no creator {creator_id!r}", code="creator_not_found")


def _creator_refusals(creator_id: str) -> Refusals:
    return {"not_creator": lambda _: _not_creator(creator_id)}


def follow_arguments(creator: UserKeys, follower_id: str) -> Arguments:
    """KEYS and ARGV of ``follow.lua`` and of ``unfollow.lua``, whose headers are the same."""
    return [creator.followers, creator.followers_version, creator.profile, creator.live_room], [follower_id]


def creator_card_arguments(creator: UserKeys, caller_id: str | None) -> Arguments:
    """KEYS and ARGV of ``creator_card.lua`` (no caller: an anonymous read)."""
    return (
        [creator.profile, creator.followers, creator.followers_version, creator.live_room],
        [caller_id or ""],
    )


def room_follow_arguments(
    room: RoomKeys,
    follower_id: str,
    name: str,
    followers: int,
    version: int,
    since_ms: int | None,
    stream_len: int,
) -> Arguments:
    """KEYS and ARGV of ``room_follow.lua`` (no ``since_ms``: only the count is copied)."""
    return (
        [room.info, room.events, room.followed],
        [follower_id, name, followers, version, "" if since_ms is None else since_ms, stream_len, room.wake],
    )


def room_share_arguments(room: RoomKeys, user_id: str, name: str, stream_len: int) -> Arguments:
    """KEYS and ARGV of ``room_share.lua``."""
    return [room.info, room.events, room.shared], [user_id, name, stream_len, room.wake]
