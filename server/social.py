"""Follows and shares, shared by every transport: follow and unfollow a creator, a creator's
public profile, the creators a user follows, and a share of a live room.

A follow writes three slots, one call each, in an order that makes a crash between two of
them harmless:

1. the follower's list of creators (``{u:F}:following``), first, so that the list never
   misses a creator followed (it may hold one too many, which reading it filters out);
2. the creator's follower set (``follow.lua``), the truth: the count, whether a user
   follows, and a version bumped by every change, read together with the live room;
3. while the creator is live, the room (``room_follow.lua``): its copy of the count, kept
   only if its version is newer than the room's, and the ``follow`` event, once per user
   per live, for a follow that began during the live.

A crash after 1 leaves an extra list entry; after 2, the room's count stale until the next
change and no event yet. Both are repaired by retrying the request, which is idempotent: a
retried follow reads the time the follow began, and the room announces it if that was
during the live and it was not announced yet. An unfollow writes 2, then 1, then 3.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from server.errors import Conflict, NotFound
from server.store import Store
from server.store.social import FollowChange


@dataclass
class SocialService:
    store: Store
    # The display name of a user without one in their token (``GiftService.name_of``).
    name_of: Callable[[str], Awaitable[str]]

    async def follow(self, user_id: str, creator_id: str, name: str | None = None) -> dict[str, Any]:
        """Follow the creator (again: nothing changes); announce it in their live room."""
        self._not_self(user_id, creator_id)
        social = self.store.social
        await social.list_creator(user_id, creator_id)
        try:
            change = await social.follow(creator_id, user_id)
        except NotFound:
            await social.unlist_creator(user_id, creator_id)
            raise
        if change.live_room_id is not None:
            await social.tell_room(
                change.live_room_id,
                change.followers,
                change.version,
                follower_id=user_id,
                name=name or await self.name_of(user_id),
                since_ms=change.since_ms,
            )
        return self._answer(creator_id, True, change)

    async def unfollow(self, user_id: str, creator_id: str) -> dict[str, Any]:
        """Stop following the creator (not following them: nothing changes)."""
        self._not_self(user_id, creator_id)
        social = self.store.social
        change = await social.unfollow(creator_id, user_id)
        await social.unlist_creator(user_id, creator_id)
        if change.live_room_id is not None:
            await social.tell_room(change.live_room_id, change.followers, change.version)
        return self._answer(creator_id, False, change)

    async def creator(self, creator_id: str, caller_id: str | None) -> dict[str, Any]:
        """The creator's public profile; ``following`` is whether ``caller_id`` follows them."""
        card = await self.store.social.card(creator_id, caller_id)
        live_room_id = card.live_room_id
        if live_room_id is not None:
            # The pointer outlives its room for a moment at the end of a live.
            room = await self.store.rooms.live_room_of(creator_id)
            live_room_id = room.room_id if room is not None else None
        return {
            "id": card.creator_id,
            "name": card.name,
            "followers": card.followers,
            "following": card.following,
            "live_room_id": live_room_id,
        }

    async def following(self, user_id: str, cursor: str | None, limit: int) -> dict[str, Any]:
        creators, next_cursor = await self.store.social.following(user_id, cursor, limit)
        return {
            "creators": [{"id": creator_id, "name": name} for creator_id, name in creators],
            "next_cursor": next_cursor,
        }

    async def share(self, user_id: str, room_id: str, name: str | None = None) -> bool:
        """Share a live room: announced once per user per live; True if announced now."""
        return await self.store.social.share(room_id, user_id, name or await self.name_of(user_id))

    @staticmethod
    def _not_self(user_id: str, creator_id: str) -> None:
        if user_id == creator_id:
            raise Conflict("you cannot follow yourself", code="self_follow")

    @staticmethod
    def _answer(creator_id: str, following: bool, change: FollowChange) -> dict[str, Any]:
        return {"creator_id": creator_id, "following": following, "followers": change.followers}
