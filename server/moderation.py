"""Moderation of a creator's lives, shared by every route that moderates: who may act on
whom, and the action with its entry in the creator's moderation log.

Whether the actor may is read from the engine on every action (``Moderation.authority``),
never cached: a moderator the creator removes loses the power with their next action.
The creator and their moderators may delete, mute and ban; nobody may mute or ban the
creator, and a moderator may not mute or ban another moderator.
"""

from __future__ import annotations

from server import logs
from server.errors import Forbidden
from server.store import Store
from server.store.moderation import DELETE, MUTE, UNMUTE, Authority


async def authorised(store: Store, actor_id: str, room_id: str, target_id: str | None = None) -> Authority:
    """The room's authority for this action, or ``Forbidden`` if the actor may not take it."""
    logs.bind(room=room_id, moderator=actor_id)
    authority = await store.moderation.authority(room_id, actor_id, target_id)
    creator_id = authority.room.creator_id
    is_creator = actor_id == creator_id
    if not is_creator and not authority.actor_is_moderator:
        raise Forbidden("only the room's creator and their moderators can moderate it")
    if target_id == creator_id:
        raise Forbidden("the creator cannot be muted or banned in their own lives")
    if target_id is not None and authority.target_is_moderator and not is_creator:
        raise Forbidden("a moderator cannot mute or ban another moderator")
    return authority


async def delete_chat(store: Store, actor_id: str, room_id: str, event_id: str) -> None:
    """Delete a chat message; deleting it again changes nothing and logs nothing."""
    authority = await authorised(store, actor_id, room_id)
    sender = await store.moderation.delete_chat(room_id, event_id)
    if sender is not None:
        await store.moderation.log(
            authority.room.creator_id, DELETE, actor_id, sender, room_id, event_id=event_id
        )


async def mute(store: Store, actor_id: str, room_id: str, user_id: str, seconds: int) -> None:
    authority = await authorised(store, actor_id, room_id, user_id)
    await store.moderation.mute(room_id, user_id, seconds)
    await store.moderation.log(authority.room.creator_id, MUTE, actor_id, user_id, room_id, seconds=seconds)


async def unmute(store: Store, actor_id: str, room_id: str, user_id: str) -> None:
    authority = await authorised(store, actor_id, room_id, user_id)
    await store.moderation.unmute(room_id, user_id)
    await store.moderation.log(authority.room.creator_id, UNMUTE, actor_id, user_id, room_id)


async def ban(store: Store, actor_id: str, room_id: str, user_id: str) -> None:
    authority = await authorised(store, actor_id, room_id, user_id)
    await store.moderation.ban(authority.room, actor_id, user_id)


async def unban(store: Store, actor_id: str, room_id: str, user_id: str) -> None:
    authority = await authorised(store, actor_id, room_id, user_id)
    await store.moderation.unban(authority.room, actor_id, user_id)
