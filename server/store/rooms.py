"""Live rooms: a creator goes live in one room at a time and ends it."""

from __future__ import annotations

from redis.asyncio import Redis

from server.errors import Conflict, Forbidden, NotFound
from server.keys import KeySchema
from server.store.records import Room


class Rooms:
    def __init__(self, redis: Redis, keys: KeySchema) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, room_id: str) -> Room:
        raw = await self._redis.hgetall(self._keys.room(room_id))
        if not raw:
            raise NotFound(f"no room {room_id!r}", code="room_not_found")
        return Room(
            room_id=room_id,
            creator_id=raw["creator_id"],
            title=raw.get("title", ""),
            state=raw["state"],
            created_ms=int(raw["created_ms"]),
            ended_ms=int(raw["ended_ms"]) if "ended_ms" in raw else None,
        )

    async def create(self, creator_id: str, room_id: str, title: str, now_ms: int) -> Room:
        live_key = self._keys.user(creator_id).live_room
        current = await self._redis.get(live_key)
        if current is not None:
            try:
                room = await self.get(current)
            except NotFound:
                room = None
            if room is not None and room.live:
                raise Conflict(f"already live in room {current!r}; end it first", code="already_live")
        room = Room(room_id, creator_id, title, "live", now_ms, None)
        await self._redis.hset(
            self._keys.room(room_id),
            mapping={
                "creator_id": creator_id,
                "title": title,
                "state": "live",
                "created_ms": now_ms,
            },
        )
        await self._redis.set(live_key, room_id)
        await self._redis.zadd(self._keys.live_rooms, {room_id: now_ms})
        return room

    async def end(self, room_id: str, user_id: str, is_admin: bool, now_ms: int) -> Room:
        room = await self.get(room_id)
        if room.creator_id != user_id and not is_admin:
            raise Forbidden("only the room's creator can end it")
        key = self._keys.room(room_id)
        await self._redis.hsetnx(key, "ended_ms", now_ms)
        await self._redis.hset(key, "state", "ended")
        live_key = self._keys.user(room.creator_id).live_room
        if await self._redis.get(live_key) == room_id:
            await self._redis.delete(live_key)
        await self._redis.zrem(self._keys.live_rooms, room_id)
        return await self.get(room_id)

    async def live(self, limit: int) -> list[Room]:
        ids = await self._redis.zrevrange(self._keys.live_rooms, 0, limit - 1)
        rooms = []
        for room_id in ids:
            try:
                room = await self.get(room_id)
            except NotFound:
                continue
            if room.live:
                rooms.append(room)
        return rooms
