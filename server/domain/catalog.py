"""The catalog: gifts with coin costs, coin packages priced per region in minor units, and
the App Store products (per app bundle) and Google Play products (per package name) that buy
a package's coins."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Annotated, Any

import msgspec

from server.domain.ids import ID_PATTERN
from server.errors import InvalidRequest, NotFound

MAX_GIFT_COINS = 1_000_000

GiftId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
GiftText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
GiftCoins = Annotated[int, msgspec.Meta(ge=1, le=MAX_GIFT_COINS)]


class Gift(msgspec.Struct, frozen=True):
    """A gift, defined once: its fields, their limits and their defaults.

    The catalog file, the stored form of admins' edits (``store.catalog``), the admin request
    bodies (``domain.requests``) and the OpenAPI document all follow this struct, so a new
    field is added here, with a default so that gifts stored before it still read.
    """

    id: GiftId
    name: GiftText
    coins: GiftCoins
    streakable: bool = False
    animation: GiftText = "default"
    retired: bool = False

    @classmethod
    def read(cls, fields: Mapping[str, Any]) -> Gift:
        """A gift from its fields, checked against the limits above; fields it does not have
        are ignored. ``ValueError`` (``msgspec.ValidationError``) if they are not a gift."""
        return msgspec.convert(fields, cls)

    def to_dict(self) -> dict[str, Any]:
        """The gift as clients see it: everything but ``retired``."""
        record = self.to_record()
        del record["retired"]
        return record

    def to_record(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


def tier(coins: int, moment_coins: int, grand_moment_coins: int) -> int:
    """A gift's tier by its price: 3 from ``grand_moment_coins``, 2 from ``moment_coins``, else 1."""
    if coins >= grand_moment_coins:
        return 3
    return 2 if coins >= moment_coins else 1


@dataclass(frozen=True)
class Package:
    id: str
    region: str
    coins: int
    amount_minor: int
    currency: str

    def times(self, quantity: int) -> Package:
        """``quantity`` of this package bought at once (an app store's purchase quantity)."""
        if quantity == 1:
            return self
        return replace(self, coins=self.coins * quantity, amount_minor=self.amount_minor * quantity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "coins": self.coins,
            "price": {"amount_minor": self.amount_minor, "currency": self.currency},
        }


@dataclass(frozen=True)
class Catalog:
    """Gifts by id (retired ones included, so events about them still resolve) and packages.

    Admins change gifts at run time (``store.catalog``); ``apply`` puts a changed gift in
    place. A gift's price is read once per request, so a change never alters a gift already
    sent: its cost is in the sender's ledger and in the stored idempotent answer.
    """

    gifts: dict[str, Gift]
    regions: dict[str, dict[str, Package]]
    # App bundle id -> App Store product id -> the package whose coins (and price) it buys.
    apple: dict[str, dict[str, Package]] = field(default_factory=dict)
    # Android package name -> Google Play product id -> the package whose coins it buys.
    google: dict[str, dict[str, Package]] = field(default_factory=dict)

    def apply(self, gift: Gift) -> None:
        self.gifts[gift.id] = gift

    def on_sale(self) -> list[Gift]:
        return [gift for gift in self.gifts.values() if not gift.retired]

    @classmethod
    def load_default(cls) -> Catalog:
        """Load the catalog shipped in the package (``server/data/catalog.toml``)."""
        text = resources.files("server").joinpath("data/catalog.toml").read_text("utf-8")
        return cls.from_toml(text)

    @classmethod
    def from_toml(cls, text: str) -> Catalog:
        raw = tomllib.loads(text)
        gifts: dict[str, Gift] = {}
        for entry in raw.get("gifts", []):
            try:
                # A gift's animation is named after it unless the file says otherwise.
                gift = Gift.read({"animation": entry.get("id"), **entry})
            except msgspec.ValidationError as exc:
                raise ValueError(f"gift {entry.get('id')!r}: {exc}") from None
            if gift.id in gifts:
                raise ValueError(f"gift {gift.id} is listed twice")
            gifts[gift.id] = gift
        regions: dict[str, dict[str, Package]] = {}
        for region, body in raw.get("regions", {}).items():
            currency = str(body["currency"])
            regions[region] = {}
            for entry in body["packages"]:
                package = Package(
                    id=str(entry["id"]),
                    region=region,
                    coins=_positive_int(entry["coins"], f"package {entry['id']} coins"),
                    amount_minor=_positive_int(entry["amount_minor"], f"package {entry['id']} price"),
                    currency=currency,
                )
                regions[region][package.id] = package
        return cls(
            gifts=gifts,
            regions=regions,
            apple=_store_products("apple", raw.get("apple", {}), regions),
            google=_store_products("google", raw.get("google", {}), regions),
        )

    def gift(self, gift_id: str) -> Gift:
        """A gift that can be sent now; ``unknown_gift`` if there is none or it was retired."""
        gift = self.gifts.get(gift_id)
        if gift is None or gift.retired:
            raise NotFound(f"unknown gift {gift_id!r}", code="unknown_gift")
        return gift

    def packages(self, region: str) -> list[Package]:
        return list(self.regions[self.check_region(region)].values())

    def check_region(self, region: str) -> str:
        """``region`` if the catalog sells coins there; ``unknown_region`` if not."""
        if region not in self.regions:
            known = ", ".join(sorted(self.regions))
            raise InvalidRequest(f"unknown region {region!r}; known regions: {known}", code="unknown_region")
        return region

    def apple_product(self, bundle_id: str, product_id: str) -> Package:
        """The package an App Store product of ``bundle_id`` buys; ``unknown_product`` if the
        catalog sells no such product."""
        return _app_product(self.apple, "App Store", bundle_id, product_id)

    def google_product(self, package_name: str, product_id: str) -> Package:
        """The package a Google Play product of ``package_name`` buys; ``unknown_product`` if
        the catalog sells no such product."""
        return _app_product(self.google, "Google Play", package_name, product_id)

    def package(self, region: str, package_id: str) -> Package:
        for package in self.packages(region):
            if package.id == package_id:
                return package
        raise NotFound(f"no package {package_id!r} in region {region!r}", code="unknown_package")


def _store_products(
    store: str, raw: Mapping[str, Any], regions: dict[str, dict[str, Package]]
) -> dict[str, dict[str, Package]]:
    """Each app's products in ``store`` (by bundle id or package name), each naming a package
    of the app's region."""
    products: dict[str, dict[str, Package]] = {}
    for bundle_id, body in raw.items():
        region = str(body.get("region", ""))
        if region not in regions:
            raise ValueError(f"{store} app {bundle_id!r}: region {region!r} sells no packages")
        products[bundle_id] = {}
        for entry in body.get("products", []):
            product_id, package_id = str(entry["id"]), str(entry["package"])
            if package_id not in regions[region]:
                raise ValueError(f"{store} product {product_id!r}: no package {package_id!r} in {region}")
            if product_id in products[bundle_id]:
                raise ValueError(f"{store} product {product_id!r} is listed twice")
            products[bundle_id][product_id] = regions[region][package_id]
    return products


def _positive_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _app_product(
    products: Mapping[str, Mapping[str, Package]], store: str, app: str, product_id: str
) -> Package:
    package = products.get(app, {}).get(product_id)
    if package is None:
        raise InvalidRequest(
            f"no {store} product {product_id[:100]!r} for app {app!r}: nothing credited",
            code="unknown_product",
        )
    return package
