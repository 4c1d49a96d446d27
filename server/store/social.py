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

from server.errors import Conflict, NotFound
from server.keys import KeySchema
from server.store.scripts import Scripts


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
    def __init__(self, redis: Redis, keys: KeySchema, scripts: Scripts, stream_len: int) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._stream_len = stream_len

    def _creator_keys(self, creator_id: str) -> list[str]:
        user = self._keys.user(creator_id)
        return [user.followers, user.followers_version, user.profile, user.live_room]

    async def follow(self, creator_id: str, follower_id: str) -> FollowChange | None:
        """Add the follower to the creator's set (once); None if the user is not a creator."""
        reply = await self._scripts.follow(keys=self._creator_keys(creator_id), args=[follower_id])
        if reply[0] != "ok":
            return None
        return FollowChange(
            changed=int(reply[1]) == 1,
            followers=int(reply[2]),
            version=int(reply[3]),
            since_ms=int(float(reply[4])),
            live_room_id=reply[5] or None,
        )

    async def unfollow(self, creator_id: str, follower_id: str) -> FollowChange | None:
        """Remove the follower from the creator's set; None if the user is not a creator."""
        reply = await self._scripts.unfollow(keys=self._creator_keys(creator_id), args=[follower_id])
        if reply[0] != "ok":
            return None
        return FollowChange(
            changed=int(reply[1]) == 1,
            followers=int(reply[2]),
            version=int(reply[3]),
            live_room_id=reply[4] or None,
        )

    async def list_creator(self, user_id: str, creator_id: str) -> None:
        """Put the creator on the user's list of creators followed (idempotent)."""
        await self._redis.zadd(self._keys.user(user_id).following, {creator_id: 0})

    async def unlist_creator(self, user_id: str, creator_id: str) -> None:
        await self._redis.zrem(self._keys.user(user_id).following, creator_id)

    async def card(self, creator_id: str, caller_id: str | None) -> CreatorCard | None:
        """The creator's name, follower count (with its version), whether ``caller_id``
        follows them and their live room id as recorded; None if the user is not a creator."""
        user = self._keys.user(creator_id)
        reply = await self._scripts.creator_card(
            keys=[user.profile, user.followers, user.followers_version, user.live_room],
            args=[caller_id or ""],
        )
        role, name, followers, version, following, live = reply
        if role != "creator":
            return None
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
        assert card is not None
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
        keys = self._keys.room(room_id)
        reply = await self._scripts.room_follow(
            keys=[keys.info, keys.events, keys.followed],
            args=[
                follower_id,
                name,
                followers,
                version,
                "" if since_ms is None else since_ms,
                self._stream_len,
                keys.wake,
            ],
        )
        return reply[0] == "ok" and int(reply[1]) == 1

    async def share(self, room_id: str, user_id: str, name: str) -> bool:
        """Announce the user's share of a live room, once per live; True if announced now."""
        keys = self._keys.room(room_id)
        reply = await self._scripts.room_share(
            keys=[keys.info, keys.events, keys.shared], args=[user_id, name, self._stream_len, keys.wake]
        )
        if reply[0] == "missing":
            raise NotFound(f"no room {room_id!r}", code="room_not_found")
        if reply[0] == "ended":
            raise Conflict(f"room {room_id!r} has ended", code="room_ended")
        return int(reply[1]) == 1

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
