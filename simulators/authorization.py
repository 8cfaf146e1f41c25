"""Id-tag knowledge kept on the charger: the Local Authorization List and the
Authorization Cache (OCPP 1.6, sections 3.5.1-3.5.3, 5.10, 5.15).

The list is what the CSMS sends (versioned, Full or Differential); the cache is what the
charger learnt from IdTagInfo answers. List entries win over cache entries and are never
copied into the cache (3.5.3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulators.timefmt import parse_iso


class UpdateStatus(enum.StrEnum):
    """UpdateStatus of SendLocalList.conf (section 7.44)."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


@dataclass(frozen=True, slots=True, kw_only=True)
class TagInfo:
    """IdTagInfo (section 7.25)."""

    status: str
    expiry: datetime | None = None
    parent: str | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> TagInfo:
        expiry = data.get("expiryDate")
        return cls(
            status=data["status"],
            expiry=parse_iso(expiry) if expiry else None,
            parent=data.get("parentIdTag"),
        )

    def accepted_at(self, now: datetime) -> bool:
        """Accepted and not expired (an expired entry counts as Expired, 3.5.1)."""
        return self.status == "Accepted" and (self.expiry is None or now < self.expiry)


class LocalList:
    """The versioned Local Authorization List (5.15)."""

    def __init__(self, *, max_length: int, max_send: int) -> None:
        self.version = 0  # 0: empty / never set (5.10)
        self.entries: dict[str, TagInfo] = {}  # idTag -> info
        self.max_length = max_length  # LocalAuthListMaxLength
        self.max_send = max_send  # SendLocalListMaxLength

    def update(self, version: int, update_type: str, items: list[dict[str, Any]]) -> UpdateStatus:
        """Apply a SendLocalList.req; the list is untouched unless Accepted."""
        if len(items) > self.max_send:
            return UpdateStatus.FAILED
        tags = [item["idTag"] for item in items]
        if len(set(tags)) != len(tags):
            return UpdateStatus.FAILED
        if update_type == "Full":
            if any("idTagInfo" not in item for item in items):
                return UpdateStatus.FAILED
            new = {item["idTag"]: TagInfo.from_payload(item["idTagInfo"]) for item in items}
        elif update_type == "Differential":
            if version <= self.version:
                return UpdateStatus.VERSION_MISMATCH
            new = dict(self.entries)
            for item in items:
                if "idTagInfo" in item:
                    new[item["idTag"]] = TagInfo.from_payload(item["idTagInfo"])
                else:
                    new.pop(item["idTag"], None)
        else:
            return UpdateStatus.FAILED
        if len(new) > self.max_length:
            return UpdateStatus.FAILED
        self.entries = new
        self.version = version
        return UpdateStatus.ACCEPTED


class Authorizer:
    """Answers 'may this idTag charge?' from the list and the cache, without the CSMS."""

    def __init__(self, *, max_length: int, max_send: int) -> None:
        self.local_list = LocalList(max_length=max_length, max_send=max_send)
        self.cache: dict[str, TagInfo] = {}  # idTag -> last IdTagInfo the CSMS gave

    def lookup(self, id_tag: str, *, list_enabled: bool, cache_enabled: bool) -> TagInfo | None:
        """The local knowledge about `id_tag` (list first, 3.5.3), or None."""
        if list_enabled and id_tag in self.local_list.entries:
            return self.local_list.entries[id_tag]
        if cache_enabled:
            return self.cache.get(id_tag)
        return None

    def learn(self, id_tag: str, info: dict[str, Any], *, cache_enabled: bool) -> TagInfo:
        """Record an IdTagInfo from Authorize/StartTransaction/StopTransaction.conf (3.5.2)."""
        tag_info = TagInfo.from_payload(info)
        if cache_enabled and id_tag not in self.local_list.entries:
            self.cache[id_tag] = tag_info
        return tag_info

    def clear_cache(self) -> None:
        """ClearCache (5.4)."""
        self.cache.clear()
