"""Authorization against the local id-tag list (OCPP 1.6, 3.5 and 7.15 IdTagInfo)."""

from __future__ import annotations

from datetime import datetime

from csms.protocol.state import JSON
from csms.protocol.timefmt import parse_timestamp
from storage.records import IdTag


def id_tag_info(record: IdTag | None, id_tag: str, *, mode: str, now: datetime) -> JSON:
    """The IdTagInfo for ``id_tag`` from the local list (or Accepted under ``accept_all``)."""
    if mode == "accept_all":
        return {"status": "Accepted"}
    # IdToken is a CiString20Type, case insensitive (7.15, 7.28).
    if record is None or record.id_tag.lower() != id_tag.lower():
        return {"status": "Invalid"}
    info: JSON = {"status": record.status}
    if record.expiry_date:
        info["expiryDate"] = record.expiry_date
        expiry = parse_timestamp(record.expiry_date)
        if record.status == "Accepted" and expiry is not None and expiry <= now:
            info["status"] = "Expired"
    if record.parent_id_tag:
        info["parentIdTag"] = record.parent_id_tag
    return info
