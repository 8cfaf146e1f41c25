"""``/api/v1/chargers``: register chargers, read their state (DESIGN 6)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from aiohttp import web

from csms.api.common import (
    bad_request,
    conflict,
    field,
    not_found,
    ok,
    page,
    pagination,
    read_json,
    reject_unknown,
)
from csms.api.keys import FORGET_PASSWORD, HUB, STORE
from csms.api.query import PAGINATION, accepts
from csms.handshake_security import PROFILES
from csms.passwords import generate_key, hash_password, key_problem
from csms.protocol.core import persisted_state
from csms.protocol.state import RegistrationStatus
from csms.protocol.timefmt import format_timestamp
from csms.server import MAX_ID_LENGTH, valid_charger_id
from storage.records import ChargerRegistration, ChargerState, Connector

routes = web.RouteTableDef()
# A charger id may hold any character but '/' (csms.server.valid_charger_id); aiohttp's default
# pattern for {id} would also refuse '{' and '}', leaving such a charger registered but
# unaddressable. The same for id tags (id_tags.py) and commands to a charger (commands.py).

_FIELDS = ("id", "password", "securityProfile", "description", "registrationPolicy")
_PATCH_FIELDS = ("password", "securityProfile", "description", "registrationPolicy")
DEFAULT_PROFILE = 1  # HTTP Basic auth with a generated key: secure by default (DESIGN 6)
# Profiles whose credential is an AuthorizationKey; 0 has none, 3 a client certificate.
_KEYED_PROFILES = (1, 2)


def charger_view(
    registration: ChargerRegistration,
    state: ChargerState | None,
    connectors: list[Connector],
    settings: dict[str, Any] | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    state = state or ChargerState(charger_id=registration.id)
    return {
        "id": registration.id,
        "description": registration.description,
        "registrationPolicy": registration.registration_policy,
        "hasPassword": registration.password_hash is not None,
        "securityProfile": registration.security_profile,
        "registrationStatus": state.registration_status,
        "connected": state.connected,
        "node": node,
        "connectedAt": state.connected_at,
        "disconnectedAt": state.disconnected_at,
        "lastSeenAt": state.last_seen_at,
        "remoteAddress": state.remote_address,
        "boot": state.boot,
        "bootedAt": state.booted_at,
        "firmwareStatus": state.firmware_status,
        "diagnosticsStatus": state.diagnostics_status,
        "lastSequence": state.last_sequence,
        "connectors": [
            {
                "connectorId": c.connector_id,
                "status": c.status,
                "errorCode": c.error_code,
                "info": c.info,
                "vendorId": c.vendor_id,
                "vendorErrorCode": c.vendor_error_code,
                "timestamp": c.status_timestamp,
                "updatedAt": c.updated_at,
            }
            for c in connectors
        ],
        # What the charger accepted through commands: availability per connector,
        # chargingProfiles, localListVersion, configuration (csms/protocol/commands.py).
        "settings": settings or {},
        "createdAt": registration.created_at,
        "updatedAt": registration.updated_at,
    }


async def _view(request: web.Request, charger_id: str) -> dict[str, Any]:
    store = request.app[STORE]
    registration = await store.get_registration(charger_id)
    if registration is None:
        raise not_found(f"charger {charger_id}")
    state = _fresh(request, charger_id, await store.get_charger_state(charger_id))
    return charger_view(
        registration,
        state,
        await store.get_connectors(charger_id),
        await store.charger_settings(charger_id),
        node=(await request.app[HUB].holders([charger_id])).get(charger_id),
    )


def _fresh(
    request: web.Request, charger_id: str, stored: ChargerState | None
) -> ChargerState | None:
    """The stored state, or the live one where the charger's snapshot is in memory (its
    sequence and last sign of life are stored only along with other changes)."""
    live = request.app[HUB].live_snapshot(charger_id)
    return stored if live is None else persisted_state(live)


def _policy(body: dict[str, Any]) -> str | None:
    policy = field(body, "registrationPolicy", str)
    if policy is not None and policy not in RegistrationStatus.ALL:
        raise bad_request(
            "registrationPolicy must be one of " + ", ".join(RegistrationStatus.ALL),
            "invalid_field",
        )
    return policy


def _profile(body: dict[str, Any]) -> int | None:
    profile = field(body, "securityProfile", int)
    if profile is not None and profile not in PROFILES:
        raise bad_request("securityProfile must be 0, 1, 2 or 3", "invalid_field")
    return profile


async def _credentials(
    body: dict[str, Any], profile: int, stored_hash: str | None
) -> tuple[str | None, str | None]:
    """(password hash to store, generated key to show once) for a registration at
    ``profile``: 1 and 2 always have a key (given, kept, or generated), 0 and 3 none."""
    given = field(body, "password", str, nullable=True)
    if profile not in _KEYED_PROFILES:
        if given is not None:
            raise bad_request(
                f"password is not used at securityProfile {profile}"
                + (" (the client certificate is the credential)" if profile == 3 else ""),
                "invalid_field",
            )
        return None, None
    if "password" in body and given is None:
        raise bad_request(
            f"securityProfile {profile} needs a password; set securityProfile 0 to connect"
            " without one",
            "invalid_field",
        )
    shown = None
    if given is None:
        if stored_hash is not None:
            return stored_hash, None
        given = shown = generate_key()
    problem = key_problem(given)
    if problem:
        raise bad_request(problem, "invalid_field")
    return await asyncio.to_thread(hash_password, given), shown


def _with_key(view: dict[str, Any], shown: str | None) -> dict[str, Any]:
    """The view, with a generated key in this one answer only (as ``password``)."""
    return view if shown is None else {**view, "password": shown}


@routes.post("/api/v1/chargers")
async def create_charger(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, _FIELDS)
    charger_id = field(body, "id", str, required=True)
    if not valid_charger_id(charger_id):
        raise bad_request(
            f"id must be 1 to {MAX_ID_LENGTH} characters, without '/' or control characters,"
            " and not . or ..",
            "invalid_field",
        )
    description = field(body, "description", str) or ""
    policy = _policy(body) or RegistrationStatus.ACCEPTED
    profile = _profile(body)
    profile = DEFAULT_PROFILE if profile is None else profile
    password_hash, shown = await _credentials(body, profile, None)
    hub = request.app[HUB]
    if await request.app[STORE].get_registration(charger_id) is not None:
        raise conflict(f"charger {charger_id} is already registered")
    stamp = format_timestamp(hub.clock())
    registration = ChargerRegistration(
        id=charger_id,
        password_hash=password_hash,
        description=description,
        registration_policy=policy,
        created_at=stamp,
        updated_at=stamp,
        security_profile=profile,
    )
    await hub.save_registration(registration)
    return ok(_with_key(await _view(request, charger_id), shown), status=201)


@routes.get("/api/v1/chargers")
@accepts(*PAGINATION)
async def list_chargers(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    store = request.app[STORE]
    result = await store.list_registrations(limit=limit, starting_after=starting_after)
    ids = [r.id for r in result.items]
    states = await store.get_charger_states(ids)
    connectors = await store.get_connectors_of(ids)
    settings = {charger_id: await store.charger_settings(charger_id) for charger_id in ids}
    nodes = await request.app[HUB].holders(ids)
    return page(
        (
            charger_view(
                r,
                _fresh(request, r.id, states.get(r.id)),
                connectors.get(r.id, []),
                settings[r.id],
                node=nodes.get(r.id),
            )
            for r in result.items
        ),
        result.has_more,
    )


@routes.get("/api/v1/chargers/{id:[^/]+}")
async def get_charger(request: web.Request) -> web.Response:
    return ok(await _view(request, request.match_info["id"]))


@routes.patch("/api/v1/chargers/{id:[^/]+}")
async def update_charger(request: web.Request) -> web.Response:
    charger_id = request.match_info["id"]
    body = await read_json(request)
    reject_unknown(body, _PATCH_FIELDS)
    store, hub = request.app[STORE], request.app[HUB]
    registration = await store.get_registration(charger_id)
    if registration is None:
        raise not_found(f"charger {charger_id}")
    changes: dict[str, Any] = {}
    if "description" in body:
        changes["description"] = field(body, "description", str) or ""
    if "registrationPolicy" in body:
        changes["registration_policy"] = _policy(body)
    profile = _profile(body)
    profile = registration.security_profile if profile is None else profile
    password_hash, shown = await _credentials(body, profile, registration.password_hash)
    changes["security_profile"] = profile
    changes["password_hash"] = password_hash
    updated = replace(registration, **changes, updated_at=format_timestamp(hub.clock()))
    await hub.save_registration(updated)
    if password_hash != registration.password_hash:
        request.app[FORGET_PASSWORD](charger_id)
    return ok(_with_key(await _view(request, charger_id), shown))


@routes.delete("/api/v1/chargers/{id:[^/]+}")
async def delete_charger(request: web.Request) -> web.Response:
    charger_id = request.match_info["id"]
    if await request.app[STORE].get_registration(charger_id) is None:
        raise not_found(f"charger {charger_id}")
    await request.app[HUB].delete(charger_id)
    request.app[FORGET_PASSWORD](charger_id)
    return ok({"id": charger_id, "deleted": True})
