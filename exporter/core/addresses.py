"""Exchange addresses, as the core sees them: a mapping from address to entity name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AddressBook:
    """Exchange addresses: address -> entity name."""

    entities: Mapping[str, str]

    def entity(self, address: str | None) -> str | None:
        return self.entities.get(address) if address else None

    def __len__(self) -> int:
        return len(self.entities)
