"""Fuzz the HTTP API from its own OpenAPI document (schemathesis on a real server).

Every operation gets schema-valid and schema-violating requests, sent with the tokens of a
funded viewer, a live creator, an admin and a viewer with nothing, or with none. Nothing
may answer 5xx; every error must be ``{"error": {"code", "message"}}`` with a code the
document lists for that operation and status; every response must match the document.
Afterwards, money has moved only through gifts the fuzz saw succeed, and the books audit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.api import openapi
from server.domain import webhooks
from tests.conftest import Engine
from tests.support import (
    WEBHOOK_SECRET,
    Api,
    ServerProcess,
    delete_prefix,
    running_server,
    server_env,
    unique,
)

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Any]
# Examples per operation and mode: about 3,000 requests in all, well under a minute.
EXAMPLES = 50


@schemathesis.check
def no_server_error_but_an_unconfigured_provider(ctx: Any, response: Any, case: Case) -> bool | None:
    """``not_a_server_error``, but for the payment providers this server is not configured for
    (the fuzz's takes the sandbox only): their routes answer ``503 provider_unavailable`` by
    design, a setting and not a failure."""
    if response.status_code == 503 and error_code(response) == "provider_unavailable":
        return None
    result: bool | None = not_a_server_error(ctx, response, case)
    return result


CHECKS = [
    no_server_error_but_an_unconfigured_provider,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            # The fuzz sends each request with a token of its choosing (or none): schemathesis
            # makes up no Authorization header of its own.
            "with-security-parameters": False,
            # Unknown query parameters are ignored, as HTTP servers commonly do; the document
            # does not forbid them.
            "allow-extra-parameters": False,
        }
    }
)
# These end the room, freeze accounts and retire or reprice gifts, so they go after the rest,
# and then gifts once more, into that changed world.
LAST = {
    "POST /v1/rooms/{room_id}/end",
    "PUT /v1/admin/users/{user_id}/frozen",
    "POST /v1/admin/catalog/gifts",
    "PATCH /v1/admin/catalog/gifts/{gift_id}",
}
GIFTS = "POST /v1/rooms/{room_id}/gifts"
# Schema-valid requests the server may still refuse: business rules the schema cannot state.
VALID_BUT_REFUSED = {401, 402, 403, 404, 409, 429}
BUSINESS_422 = {"unknown_region", "below_minimum_withdrawal"}
# Operations whose text the server normalises before its rules apply (NFC, trimmed, no control
# or bidi-override character): rules the schema describes but cannot state.
TEXT_RULES = {"/v1/rooms/{room_id}/chat", "/v1/creator/chat-settings"}


@dataclass
class World:
    """The accounts the fuzz acts as, and the ids it may aim at besides the ones it makes up."""

    api: Api
    viewer: str  # funded; its token is fuzzed
    creator: str  # live in ``room``
    admin: str
    pauper: str  # holds nothing
    bystander: str  # funded and gifted once; its token is never fuzzed
    room: str
    order: str
    share: Fraction = Fraction(1, 2)

    def role(self, user: str) -> str:
        return {self.creator: "creator", self.admin: "admin"}.get(user, "viewer")

    def token(self, user: str | None) -> dict[str, str]:
        return {} if user is None else self.api.auth(user, self.role(user))


@dataclass
class Tally:
    """What the fuzz did, and the money it saw move."""

    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    spent: Counter[str] = field(default_factory=Counter)  # user → coins of successful gifts
    gifts: Counter[str] = field(default_factory=Counter)  # user → successful (not replayed) gifts
    diamonds: Counter[str] = field(default_factory=Counter)  # room → diamonds its gifts earned
    money_webhooks: int = 0
    nothing_to_negate: list[str] = field(default_factory=list)  # operations without inputs to break


@pytest.fixture(scope="module")
def fuzz_server(engine: Engine, logs: Path) -> Iterator[ServerProcess]:
    """A server of its own: the fuzz's admin edits the catalog and freezes users."""
    prefix = f"{unique('fz')}:"
    with running_server(server_env(engine.url, prefix), logs) as process:
        yield process
    if not engine.owned:
        delete_prefix(engine.url, prefix)


@pytest.fixture
def world(fuzz_server: ServerProcess) -> Iterator[World]:
    with httpx.Client(base_url=fuzz_server.base_url, timeout=10) as http:
        api = Api(http)
        creator, viewer, bystander = unique("c"), unique("v"), unique("b")
        room = api.open_room(creator)
        order = api.buy(viewer)["order_id"]
        api.buy(bystander)
        assert api.gift(bystander, room, "rose").status_code == 200
        world = World(api, viewer, creator, unique("a"), unique("p"), bystander, room, order)
        for user in (viewer, creator, world.admin, world.pauper):
            world.token(user)
        yield world


def test_the_api_holds_up_to_a_fuzz_and_moves_money_only_through_gifts_it_saw_succeed(
    fuzz_server: ServerProcess, world: World
) -> None:
    api = world.api
    before = snapshot(world)
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}{openapi.PATH}", config=CONFIG)
    tally = Tally()
    started = time.monotonic()
    operations = sorted(operations_of(schema), key=lambda op: op.label in LAST)
    gifts = next(op for op in operations if op.label == GIFTS)
    for operation in [*operations, gifts]:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, world, tally)
    elapsed = time.monotonic() - started
    statuses = dict(sorted(tally.statuses.items()))
    print(
        f"\nfuzz: {tally.requests} requests in {elapsed:.1f} s over {len(operations)} operations "
        f"({len(tally.nothing_to_negate)} with nothing to negate); statuses {statuses}"
    )

    assert not tally.failures, "\n\n".join(f"{key}\n{text}" for key, text in sorted(tally.failures.items()))
    assert tally.requests >= 2_500
    assert tally.gifts[world.viewer] > 0, "no gift got through: the money checks below would be vacuous"
    assert tally.money_webhooks == 0

    after = snapshot(world)
    spent = tally.spent[world.viewer]
    assert after["viewer_coins"] == before["viewer_coins"] - spent
    assert after["viewer_ledger"] == before["viewer_ledger"] + tally.gifts[world.viewer]
    for unchanged in ("bystander_coins", "bystander_ledger", "pauper_coins", "pauper_ledger"):
        assert after[unchanged] == before[unchanged], unchanged
    assert set(tally.diamonds) <= {world.room}, tally.diamonds
    assert after["creator_lifetime"] == before["creator_lifetime"] + tally.diamonds[world.room]

    audit = api.http.get("/v1/admin/audit", headers=world.token(world.admin))
    assert audit.status_code == 200 and audit.json()["ok"] is True, audit.text


def operations_of(schema: schemathesis.BaseSchema) -> list[Operation]:
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation of the document schemathesis cannot use
        operations.append(result.ok())
    return operations


def snapshot(world: World) -> dict[str, int]:
    api = world.api
    return {
        "viewer_coins": api.coins(world.viewer),
        "viewer_ledger": len(api.ledger(world.viewer)),
        "bystander_coins": api.coins(world.bystander),
        "bystander_ledger": len(api.ledger(world.bystander)),
        "pauper_coins": api.coins(world.pauper),
        "pauper_ledger": len(api.ledger(world.pauper)),
        "creator_lifetime": int(api.earnings(world.creator)["lifetime"]),
    }


def fuzz_operation(
    operation: Operation, mode: schemathesis.GenerationMode, world: World, tally: Tally
) -> None:
    spec = next(
        op for op in openapi.OPERATIONS if op.method == operation.method.upper() and op.path == operation.path
    )
    users = [world.viewer, world.creator, world.admin, world.pauper, None]
    allowed = [user for user in users if user is not None and world.role(user) in spec.roles] or users
    known = {
        "room_id": [world.room],
        "order_id": [world.order],
        "user_id": [world.viewer, world.pauper, world.bystander],
        "gift_id": ["rose", "finger_heart"],
        "package_id": ["us_550"],
        "region": ["US"],
        "path": ["index.html", "css/common.css"],
    }

    @settings(
        max_examples=EXAMPLES * 3 if operation.label == GIFTS else EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        # Mostly a user the operation is for, so that most requests get past the role check.
        user = data.draw(st.sampled_from(users if data.draw(st.integers(0, 3)) == 3 else allowed))
        if mode.is_positive:
            # JSON Schema counts 2.0 as an integer; the server takes integers only as 2 (see
            # the document's description), so valid bodies spell them that way.
            if isinstance(case.body, dict):
                case.body = whole_floats_as_ints(case.body)
            # Aim most valid requests at things that exist, to get past the lookups.
            for fields in (case.path_parameters, case.body):
                if not isinstance(fields, dict):
                    continue
                for name in fields.keys() & known.keys():
                    if data.draw(st.integers(0, 3)) < 3:
                        fields[name] = data.draw(st.sampled_from(known[name]))
        send(case, user, world, tally)

    try:
        run()
    except Unsatisfiable:
        if mode.is_positive:
            raise
        tally.nothing_to_negate.append(operation.label)


def send(case: Case, user: str | None, world: World, tally: Tally) -> None:
    headers = world.token(user)
    kwargs: dict[str, Any] = {}
    if case.operation.path == "/v1/payments/webhook" and isinstance(case.body, dict):
        # Signed, so that the event gets past the signature to the parsing and the payment logic.
        raw = json.dumps(case.body).encode()
        headers[webhooks.HEADER] = webhooks.sign(raw, WEBHOOK_SECRET, int(time.time()))
        headers["Content-Type"] = "application/json"
        kwargs["data"] = raw
    response = case.call(headers=headers, timeout=10, **kwargs)
    tally.requests += 1
    label = case.operation.label
    tally.statuses[str(response.status_code)] += 1
    problems: list[str] = []
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except FailureGroup as group:
        problems.append(str(group))
    problems += error_shape(case, response)
    if case.meta is not None and case.meta.generation.mode.is_positive:
        problems += refused_valid_request(case, response)
    if problems:
        key = f"{label} [{case.meta.generation.mode.value if case.meta else '?'}] {response.status_code}"
        tally.failures.setdefault(key, "\n".join(problems) + f"\n{case.as_curl_command(headers=headers)}")
    account(case, user, response, world, tally)


# The numbers an error may carry beside its code and message (the document's Error schema).
ERROR_DETAILS = set(openapi.ERROR_SCHEMA["properties"]["error"]["properties"]) - {"code", "message"}


def error_shape(case: Case, response: Any) -> list[str]:
    """An error is ``{"error": {"code", "message"}}`` with a code the document lists for it,
    and beside them only the integer details the document's Error schema names."""
    status = response.status_code
    if status < 400 or case.operation.path == "/readyz":
        return []
    try:
        body = json.loads(response.content)
    except ValueError:
        return [f"error body is not JSON: {response.content[:200]!r}"]
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and {"code", "message"} <= set(error) <= {"code", "message", *ERROR_DETAILS}
        and isinstance(error["code"], str)
        and isinstance(error["message"], str)
        and all(type(error[name]) is int for name in set(error) & ERROR_DETAILS)
    ):
        return [f"error body is not {{'error': {{'code', 'message', details}}}}: {body!r}"]
    spec = next(op for op in openapi.OPERATIONS if op.key == (case.method.upper(), case.operation.path))
    listed = openapi.error_codes(spec).get(status, [])
    if error["code"] not in listed:
        return [f"code {error['code']!r} is not documented for {status} here (documented: {listed})"]
    return []


def refused_valid_request(case: Case, response: Any) -> list[str]:
    """A schema-valid request is served, or refused for a reason the schema cannot express."""
    status = response.status_code
    if status < 400 or status in VALID_BUT_REFUSED:
        return []
    code = error_code(response)
    if status == 503 and code == "provider_unavailable":
        return []  # a provider this server is not configured for
    if status == 422 and code in BUSINESS_422:
        return []
    if status == 422 and code == "invalid_request" and case.operation.path == "/v1/payments/webhook":
        return []  # a payment event's data must be a payment; the schema leaves data open
    if status == 422 and code == "invalid_request" and case.operation.path in TEXT_RULES:
        return []
    return [f"a schema-valid request was refused: {status} {response.content[:300]!r}"]


def error_code(response: Any) -> str | None:
    try:
        code = json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def whole_floats_as_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: whole_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_floats_as_ints(item) for item in value]
    return value


def account(case: Case, user: str | None, response: Any, world: World, tally: Tally) -> None:
    """Record the money a successful request moved."""
    if response.status_code >= 300:
        return
    body = json.loads(response.content) if response.content[:1] == b"{" else {}
    path = case.operation.path
    if path == "/v1/rooms/{room_id}/gifts" and user is not None:
        if response.headers.get("idempotent-replayed") != ["true"]:
            cost = int(body["cost"])
            tally.spent[user] += cost
            tally.gifts[user] += 1
            tally.diamonds[str(case.path_parameters["room_id"])] += int(cost * world.share)
    elif path == "/v1/sandbox/orders/{order_id}/pay" or body.get("credited") or body.get("clawed_back"):
        tally.money_webhooks += 1  # a payment or clawback: none of the fuzz's orders is payable
