"""When to try closing a combo whose sender stopped.

The combo rule itself (which gift continues a streak, the running total) is applied
atomically by ``room_gift.lua``, so every hub process sees the same combos. What each hub
decides locally is only *when* a streak's window has passed: ``ComboWatch`` follows the
room events it reads and lists the streaks that are due. The hub then asks the engine to
close them (``combo_expire.lua``), which writes ``combo_end`` once whoever asks first.
"""

from __future__ import annotations


class ComboWatch:
    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._last_ts: dict[tuple[str, str], int] = {}

    def saw_gift(self, room_id: str, sender_id: str, ts: int, streakable: bool) -> None:
        """A gift event: a streakable gift opens or extends a streak; any other closes it."""
        if streakable:
            self._last_ts[(room_id, sender_id)] = ts
        else:
            self._last_ts.pop((room_id, sender_id), None)

    def saw_end(self, room_id: str, sender_id: str) -> None:
        """A combo_end event: the sender's streak in the room is closed."""
        self._last_ts.pop((room_id, sender_id), None)

    def forget(self, room_id: str, sender_id: str, ts: int) -> None:
        """Stop watching a streak the engine declined to close (continued or closed elsewhere)."""
        if self._last_ts.get((room_id, sender_id)) == ts:
            del self._last_ts[(room_id, sender_id)]

    def forget_room(self, room_id: str) -> None:
        for key in [key for key in self._last_ts if key[0] == room_id]:
            del self._last_ts[key]

    def due(self, now_ms: int) -> list[tuple[str, str, int]]:
        """(room, sender, last gift ts) of every streak whose window has passed by ``now_ms``."""
        return [
            (room_id, sender_id, ts)
            for (room_id, sender_id), ts in self._last_ts.items()
            if now_ms - ts > self.window_ms
        ]

    def __len__(self) -> int:
        return len(self._last_ts)
