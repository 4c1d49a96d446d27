"""``GET /openapi.json`` describes exactly the routes the app has, and is valid OpenAPI 3.1."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette

from server import errors
from server.api import openapi
from server.app import create_app
from server.domain.requests import DevTokenRequest, parse
from server.errors import InvalidRequest
from server.settings import Settings
from tests.support import JWT_SECRET, WEBHOOK_SECRET, Api

SECRETS = {"GIFTING_JWT_SECRET": JWT_SECRET, "GIFTING_WEBHOOK_SECRET": WEBHOOK_SECRET}
DEMO_ONLY = {("POST", "/v1/dev/token"), ("POST", "/v1/sandbox/orders/{order_id}/pay")}
PAGES = {("GET", "/"), ("GET", "/creator"), ("GET", "/overlay/{token}"), ("GET", "/static/{path}")}


def settings(*, demo: bool, pages: bool) -> Settings:
    loaded = Settings.from_env({**SECRETS, "GIFTING_DEMO": "1" if demo else "0"})
    assert loaded.client_dir is not None, "the checkout's client_demo/ should be found"
    return loaded if pages else dataclasses.replace(loaded, client_dir=None)


def app_and_document(config: Settings) -> tuple[Starlette, dict[str, Any]]:
    """The app as the server builds it, and the document it serves (its lifespan, and so the
    engine, is not needed for either)."""
    app = create_app(config, "redis://127.0.0.1:1/0")
    starlette: object = app
    while not isinstance(starlette, Starlette):  # the ASGI layers in front of it
        starlette = starlette.app  # type: ignore[attr-defined]

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/openapi.json")

    reply = asyncio.run(fetch())
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    document: dict[str, Any] = reply.json()
    return starlette, document


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@pytest.mark.pure
@pytest.mark.parametrize(("demo", "pages"), [(True, True), (False, False), (True, False), (False, True)])
def test_every_route_is_documented_and_every_documented_operation_is_a_route(demo: bool, pages: bool) -> None:
    app, document = app_and_document(settings(demo=demo, pages=pages))
    routes = openapi.route_keys(app.routes)
    assert routes, "the app has routes"
    assert documented(document) == routes
    assert routes >= DEMO_ONLY if demo else not DEMO_ONLY & routes
    assert routes >= PAGES if pages else not PAGES & routes


@pytest.mark.pure
def test_the_table_has_one_entry_per_operation_and_all_of_them_in_the_full_app() -> None:
    keys = [op.key for op in openapi.OPERATIONS]
    assert len(keys) == len(set(keys))
    app, _ = app_and_document(settings(demo=True, pages=True))
    assert set(keys) == openapi.route_keys(app.routes)


@pytest.mark.pure
@pytest.mark.parametrize("demo", [True, False])
def test_the_document_is_valid_openapi_3_1(demo: bool) -> None:
    _, document = app_and_document(settings(demo=demo, pages=True))
    assert document["openapi"].startswith("3.1.")
    validate(document)


@pytest.mark.pure
def test_request_bodies_are_the_msgspec_schemas_of_the_request_structs() -> None:
    _, document = app_and_document(settings(demo=True, pages=True))
    structs = {op.body for op in openapi.OPERATIONS if op.body is not None}
    _, components = msgspec.json.schema_components(structs, ref_template=openapi.SCHEMA_REF)
    expected = openapi.json_schema_patterns(components)
    schemas = document["components"]["schemas"]
    assert {name: schemas[name] for name in expected} == expected
    gift = document["paths"]["/v1/rooms/{room_id}/gifts"]["post"]
    assert gift["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GiftRequest"
    }
    assert gift["security"] == [{"bearer": []}]
    assert {"401", "402", "403", "404", "409", "413", "422", "429", "503"} <= set(gift["responses"])


@pytest.mark.pure
def test_patterns_are_in_the_json_schema_dialect_and_mean_what_the_server_checks() -> None:
    _, document = app_and_document(settings(demo=True, pages=True))
    patterns = set(patterns_in(document))
    assert "^[A-Za-z0-9_-]{1,64}$" in patterns
    for pattern in patterns:
        assert "\\Z" not in pattern and pattern.startswith("^") and pattern.endswith("$"), pattern
    # What JSON Schema's "$" means, the server checks: a trailing newline is no id.
    assert parse({"user_id": "alice"}, DevTokenRequest).user_id == "alice"
    with pytest.raises(InvalidRequest):
        parse({"user_id": "alice\n"}, DevTokenRequest)


def patterns_in(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "pattern" and isinstance(item, str):
                yield item
            else:
                yield from patterns_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from patterns_in(item)


@pytest.mark.pure
def test_paged_routes_document_their_limit_and_cursor() -> None:
    _, document = app_and_document(settings(demo=True, pages=True))
    ledger = document["paths"]["/v1/wallet/ledger"]["get"]
    params = {p["name"]: p for p in ledger["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 200 and params["limit"]["in"] == "query"
    assert params["cursor"]["in"] == "query"
    room = document["paths"]["/v1/rooms/{room_id}"]["get"]
    assert room["parameters"][0] == {
        "name": "room_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
    }


@pytest.mark.pure
def test_documented_error_codes_carry_the_status_of_their_error_class() -> None:
    classes = [
        cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.GiftingError)
    ]
    documented_classes = [cls for cls in classes if cls.default_code in openapi.STATUS_OF]
    assert len(documented_classes) >= 10
    for cls in documented_classes:
        assert openapi.STATUS_OF[cls.default_code] == cls.status, cls


def test_the_running_server_serves_the_document_of_its_own_app(api: Api) -> None:
    _, expected = app_and_document(settings(demo=True, pages=True))
    reply = api.http.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == expected
