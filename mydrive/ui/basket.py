"""Download baskets: per user, an ordered set of files and folders to fetch together."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from mydrive.errors import TooLarge


@dataclass(frozen=True)
class BasketItem:
    path: str
    is_folder: bool


class Baskets:
    """In-memory baskets keyed by user id; each holds at most ``max_items`` entries."""

    def __init__(self, *, max_items: int, max_users: int = 10_000) -> None:
        assert max_items >= 1 and max_users >= 1
        self.max_items = max_items
        self.max_users = max_users
        self._by_user: dict[str, list[BasketItem]] = {}
        self._lock = threading.Lock()

    def items(self, user_id: str) -> list[BasketItem]:
        with self._lock:
            return list(self._by_user.get(user_id, ()))

    def add(self, user_id: str, item: BasketItem) -> bool:
        """Add ``item``; False if it was already there. TooLarge past the limit."""
        with self._lock:
            items = self._by_user.get(user_id)
            if items is None:
                if len(self._by_user) >= self.max_users:
                    raise TooLarge(f"too many baskets ({self.max_users}); try again later")
                items = self._by_user[user_id] = []
            if item in items:
                return False
            if len(items) >= self.max_items:
                raise TooLarge(f"the basket holds at most {self.max_items} items; "
                               f"download or remove some first")
            items.append(item)
            return True

    def remove(self, user_id: str, path: str) -> bool:
        with self._lock:
            items = self._by_user.get(user_id, [])
            kept = [i for i in items if i.path != path]
            changed = len(kept) != len(items)
            if kept:
                self._by_user[user_id] = kept
            else:
                self._by_user.pop(user_id, None)
            return changed

    def clear(self, user_id: str) -> None:
        with self._lock:
            self._by_user.pop(user_id, None)
