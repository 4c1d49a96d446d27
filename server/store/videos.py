"""Videos: the records creators publish (metadata only, the media lives at its url), and the
gifts sent to them.

A video's record, top gifters and exactly-once guard live in its slot (``{v:<video>}``); the
creator's list of videos lives in the creator's slot. Publishing writes the record first and
the list second, so a crash in between leaves a video reachable by its id but not listed,
never a listed video without a record. A gift on a video is debited and credited like a gift
in a live (``gifting.py``); ``publish_gift`` adds it to the video's totals, once per gift event.
"""

from __future__ import annotations

import asyncio
from typing import Any

from server.errors import NotFound
from server.keys import KeySchema, VideoKeys
from server.store.batch import ScriptBatch
from server.store.records import CreatorCredit, Gifter, Video
from server.store.scripts import VIDEO_GIFT, Arguments, Call, ScriptRunner

TOP_GIFTERS = 10


class Videos:
    def __init__(self, keys: KeySchema, runner: ScriptRunner, batch: ScriptBatch) -> None:
        self._keys = keys
        self._runner = runner
        self._batch = batch

    def creator_of(self, video_id: str) -> asyncio.Future[str | None]:
        """The creator of the video, or None if there is no such video. Read through the batch
        (``store.batch``): it is the video check of every gift on a video, right before its debit."""
        return self._batch.read(("HGET", self._keys.video(video_id).info, "creator_id"))

    async def create(self, creator_id: str, video_id: str, title: str, url: str, now_ms: int) -> Video:
        """Publish a video record for ``creator_id``; its record first, then the creator's list."""
        video = self._keys.video(video_id)
        creator = self._keys.user(creator_id)
        record = {"creator_id": creator_id, "title": title, "url": url, "created_ms": now_ms, "coins": 0}
        await self._runner.pipeline([Call.command("HSET", video.info, *_flat(record))])
        await self._runner.pipeline([Call.command("ZADD", creator.videos, now_ms, video_id)])
        return (await self.read([video_id]))[0] or _missing(video_id)

    async def get(self, video_id: str) -> Video:
        """The video with its coins and top gifters; ``404 not_found`` if there is none."""
        return (await self.read([video_id]))[0] or _missing(video_id)

    async def of_creator(self, creator_id: str, limit: int) -> list[Video]:
        """The creator's videos, newest first."""
        ids: list[str] = (
            await self._runner.pipeline(
                [Call.command("ZREVRANGE", self._keys.user(creator_id).videos, 0, limit - 1)]
            )
        )[0]
        return [video for video in await self.read(ids) if video is not None]

    async def titles(self, video_ids: list[str]) -> dict[str, str]:
        """The title of each of these videos that exists."""
        if not video_ids:
            return {}
        calls = [Call.command("HGET", self._keys.video(video_id).info, "title") for video_id in video_ids]
        replies = await self._runner.pipeline(calls)
        return {video_id: title for video_id, title in zip(video_ids, replies, strict=True) if title}

    async def read(self, video_ids: list[str]) -> list[Video | None]:
        """The videos of these ids in two round trips (records and tops, then names), None in
        place of an unknown id."""
        if not video_ids:
            return []
        calls: list[Call] = []
        for video_id in video_ids:
            video = self._keys.video(video_id)
            calls += [
                Call.command("HGETALL", video.info),
                Call.command("ZREVRANGE", video.top, 0, TOP_GIFTERS - 1, "WITHSCORES"),
            ]
        replies = await self._runner.pipeline(calls)
        records: list[dict[str, str]] = replies[0::2]
        tops = [_pairs(reply) for reply in replies[1::2]]
        names_calls: list[Call] = []
        for video_id, record, top in zip(video_ids, records, tops, strict=True):
            creator = self._keys.user(record.get("creator_id", ""))
            names_calls.append(Call.command("HGET", creator.profile, "name"))
            if top:
                names_key = self._keys.video(video_id).names
                names_calls.append(Call.command("HMGET", names_key, *(sender for sender, _ in top)))
        names = iter(await self._runner.pipeline(names_calls))
        videos: list[Video | None] = []
        for video_id, record, top in zip(video_ids, records, tops, strict=True):
            creator_name = next(names)
            sender_names: list[str | None] = next(names) if top else []
            if not record:
                videos.append(None)
                continue
            gifters = tuple(
                Gifter(sender, name or sender, coins)
                for (sender, coins), name in zip(top, sender_names, strict=True)
            )
            videos.append(
                Video(
                    video_id=video_id,
                    creator_id=record["creator_id"],
                    creator_name=creator_name or record["creator_id"],
                    title=record["title"],
                    url=record["url"],
                    created_ms=int(record["created_ms"]),
                    coins=int(record.get("coins") or 0),
                    top_gifters=gifters,
                )
            )
        return videos

    def publish_gift(self, credit: CreatorCredit, *, sender_name: str) -> asyncio.Future[str]:
        """Add a debited gift to its video's coins and top gifters, at most once: "ok", "dup"
        or "missing". Queued at once and sent with the gift path's other scripts of this
        event-loop turn (``store.batch``)."""
        return self._batch.call(
            VIDEO_GIFT, *video_gift_arguments(self._keys.video(credit.video_id), credit, sender_name)
        )


def video_gift_arguments(video: VideoKeys, credit: CreatorCredit, sender_name: str) -> Arguments:
    """KEYS and ARGV of ``video_gift.lua``."""
    return (
        [video.info, video.top, video.names, video.published],
        [credit.event_id, credit.sender_id, sender_name, credit.coins],
    )


def _flat(mapping: dict[str, Any]) -> list[Any]:
    return [item for pair in mapping.items() for item in pair]


def _pairs(reply: list[Any]) -> list[tuple[str, int]]:
    """A ``ZREVRANGE … WITHSCORES`` reply as (member, score) pairs, flat or paired."""
    if reply and isinstance(reply[0], list | tuple):
        return [(str(member), int(float(score))) for member, score in reply]
    return [(str(reply[i]), int(float(reply[i + 1]))) for i in range(0, len(reply), 2)]


def _missing(video_id: str) -> Video:
    raise NotFound(f"no video {video_id!r}")
