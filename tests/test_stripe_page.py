"""The viewer page's Stripe checkout, in headless Chromium, at phone and desktop size.

Stripe is localstripe, run as a real process; the page loads its Stripe.js stand-in from
``<localstripe>/js.stripe.com/v3/`` (the server's ``GIFTING_STRIPE_JS_URL``), and localstripe's
signed webhooks reach our server, which credits the coins.

localstripe's Stripe.js stand-in draws a card field (plain inputs) and its
``confirmCardPayment`` performs only the 3D Secure step of a PaymentIntent that already holds a
card: it neither reads the field nor attaches a card. So the tests use Stripe's test cards that
ask for 3D Secure, and play the part of Stripe.js that the stand-in leaves out: they take the
card the viewer typed in the page's field and attach it to the order's PaymentIntent through
localstripe's API, then the viewer completes 3D Secure in the window the stand-in opens over
the checkout. Everything from there is real: the charge (paid, or declined by the card's
number), the webhook, the credit, the page's answer and the balance.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import (
    AXE,
    BOTH_SIZES,
    PHONE_SIZE,
    SHORT_ANIMATIONS_SETTLED,
    ConsoleWatch,
    assert_fits,
    assert_no_layout_shift,
    new_page,
    reset_layout_shift,
    sign_in,
)
from tests.conftest import Engine
from tests.support import Api, ServerProcess, unique
from tests.test_clawbacks import Books
from tests.test_pages import csp
from tests.test_stripe import LocalStripe, audited, localstripe, stripe_server

__all__ = ["localstripe"]  # the fixture: localstripe as a process, from tests/test_stripe.py

pytestmark = pytest.mark.browser

PACKAGE, COINS, PRICE = "us_550", 550, "$9.99"
# Stripe's test cards that ask for 3D Secure: one is then paid, the other declined.
CARD_PAID = "4000 0025 0000 3155"
CARD_DECLINED = "4000 0082 6000 3178"
DECLINED = "Your card was declined."
SCREENSHOTS = Path("/tmp/stripe-page")
# What the page's Content-Security-Policy refuses (Stripe.js from another origin, for one).
REFUSED_WATCH = """
window.__refused = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__refused.push(`${event.effectiveDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def shop(engine: Engine, logs: Path, chromium: str, localstripe: LocalStripe) -> Iterator[Books]:
    """Our server taking web payments through localstripe, whose webhooks it receives
    (tests/test_stripe.py's server and localstripe, the same as the API's tests)."""
    with stripe_server(engine, logs, localstripe, unique("page")) as books:
        yield books


def stripe_takes_the_card(localstripe: LocalStripe, page: Page, payment_intent: str) -> None:
    """What Stripe.js's confirmCardPayment does before 3D Secure, which the stand-in leaves
    out: the card in the page's field becomes a PaymentMethod on the PaymentIntent, confirmed
    (it then waits for 3D Secure)."""
    field = page.get_by_test_id("card-mount")
    card = {
        name: field.get_by_placeholder(name).input_value()
        for name in ("number", "exp_month", "exp_year", "cvc")
    }
    method = localstripe.http.post(
        "/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": card["number"].replace(" ", ""),
            "card[exp_month]": card["exp_month"],
            "card[exp_year]": f"20{card['exp_year']}",
            "card[cvc]": card["cvc"],
        },
    )
    assert method.status_code == 200, method.text
    attached = localstripe.http.post(
        f"/v1/payment_intents/{payment_intent}", data={"payment_method": method.json()["id"]}
    )
    assert attached.status_code == 200, attached.text
    confirmed = localstripe.http.post(f"/v1/payment_intents/{payment_intent}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "requires_action", confirmed.json()


# ---------------------------------------------------------------- the viewer's steps


def open_checkout(page: Page, console: ConsoleWatch) -> None:
    """The shop, the 550-coin package, and Stripe's card field in the checkout."""
    page.get_by_test_id("open-shop").click()
    page.get_by_test_id(f"package-{PACKAGE}").click()
    expect(page.get_by_test_id("checkout-price")).to_have_text(PRICE)
    try:
        expect(page.get_by_test_id("card-mount").get_by_placeholder("number")).to_be_visible()
    except AssertionError as missing:
        refused = page.evaluate("window.__refused")
        said = page.get_by_test_id("purchase-state").text_content()
        raise AssertionError(
            f"no card field ({said!r}); refused by the page's policy: {refused}"
        ) from missing
    expect(page.get_by_test_id("sandbox-hint")).to_be_hidden()
    expect(page.get_by_test_id("pay")).to_be_enabled()


def type_card(page: Page, number: str) -> None:
    field = page.get_by_test_id("card-mount")
    field.get_by_placeholder("number").fill(number.replace(" ", ""))
    field.get_by_placeholder("exp_month").fill("12")
    field.get_by_placeholder("exp_year").fill("34")
    field.get_by_placeholder("cvc").fill("123")
    field.get_by_placeholder("postal_code").fill("94107")


def pay(
    page: Page, localstripe: LocalStripe, order: dict[str, Any] | None = None, shot: str | None = None
) -> dict[str, Any]:
    """Pay, play Stripe's part, complete 3D Secure; the order the page paid (a new one unless
    `order` is the order the page already made for this checkout)."""
    if order is None:
        with page.expect_response(
            lambda r: r.url.endswith("/v1/purchases") and r.request.method == "POST"
        ) as answer:
            page.get_by_test_id("pay").dblclick()  # a double click pays once
        assert answer.value.status == 201, answer.value.text()
        order = answer.value.json()
    else:
        page.get_by_test_id("pay").click()
    assert order["provider"] == "stripe" and order["coins"] == COINS, order
    expect(page.get_by_test_id("pay")).to_be_disabled()
    # The stand-in's 3D Secure window, drawn over the checkout (which leaves the top layer).
    authenticate = page.get_by_role("button", name="Complete authentication")
    expect(authenticate).to_be_visible()
    if shot is not None:
        screenshot(page, shot)
    stripe_takes_the_card(localstripe, page, order["stripe"]["payment_intent"])
    authenticate.click()
    return order


def assert_page_quality(page: Page, console: ConsoleWatch) -> None:
    """tests/browser.py's checks, with axe kept out of the card field: in production it is
    Stripe's own frame (which Stripe makes accessible); here it is the stand-in's bare inputs."""
    assert_fits(page)
    assert_no_layout_shift(page)
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    page.evaluate(SHORT_ANIMATIONS_SETTLED)
    violations: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run({ exclude: [['[data-testid="card-mount"]']] },
                                      { resultTypes: ['violations'] })).violations"""
    )
    serious = [
        f"{v['impact']} {v['id']}: {v['help']}" for v in violations if v["impact"] in ("serious", "critical")
    ]
    assert not serious, "accessibility violations:\n" + "\n".join(serious)
    console.assert_clean()


def assert_tall_buttons(page: Page) -> None:
    """Every visible button of the checkout is at least 44 px tall (a finger's size)."""
    for button in page.get_by_test_id("shop").locator("button:visible").all():
        box = button.bounding_box()
        assert box is not None and box["height"] >= 44, (button.get_attribute("data-testid"), box)


def fits_the_screen(page: Page, size: dict[str, int]) -> None:
    box = page.get_by_test_id("shop").bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"], box
    mount = page.get_by_test_id("card-mount").bounding_box()
    assert (
        mount is not None
        and mount["x"] >= box["x"]
        and mount["x"] + mount["width"] <= box["x"] + box["width"]
    )


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def audit(books: Books) -> None:
    """The books' audit (tests/test_stripe.py's), in a thread of its own: Playwright's sync API
    holds this thread's event loop, and the audit runs one of its own."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(audited, books).result()


def sign_in_to_shop(
    browser: Browser, console: ConsoleWatch, base_url: str, size: dict[str, int]
) -> tuple[Page, str]:
    viewer = unique("v")
    page = new_page(browser, console, "viewer", size)
    page.add_init_script(REFUSED_WATCH)
    page.goto(base_url + "/")
    sign_in(page, viewer, "Vera Quinn")
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")
    return page, viewer


# ---------------------------------------------------------------- tests


@BOTH_SIZES
def test_a_viewer_pays_with_a_card_and_sees_the_coins(
    shop: Books,
    localstripe: LocalStripe,
    browser: Browser,
    console: ConsoleWatch,
    size: dict[str, int],
) -> None:
    api = shop.api
    page, viewer = sign_in_to_shop(browser, console, shop.base_url, size)
    name = "phone" if size["width"] < 600 else "desktop"

    open_checkout(page, console)
    reset_layout_shift(page)
    type_card(page, CARD_PAID)
    fits_the_screen(page, size)
    if size["width"] < 600:
        assert_tall_buttons(page)
    assert_page_quality(page, console)
    screenshot(page, f"{name}-checkout")

    order = pay(page, localstripe, shot=f"{name}-3d-secure")
    # Stripe took the payment; the coins arrive with its webhook, and the page shows them.
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", str(COINS), timeout=20_000)
    state = page.get_by_test_id("purchase-state")
    expect(state).to_have_attribute("data-state", "paid")
    expect(state).to_have_text(f"Paid: {COINS} coins added. Your balance is {COINS} coins.")
    expect(page.get_by_test_id("checkout-done")).to_be_focused()
    screenshot(page, f"{name}-paid")
    assert_page_quality(page, console)

    # Exactly the package's coins, once, for this order, paid through Stripe.
    assert api.coins(viewer) == COINS
    [entry] = api.ledger(viewer)
    assert (entry["kind"], entry["delta"], entry["balance"], entry["ref"]) == (
        "purchase",
        COINS,
        COINS,
        order["order_id"],
    )
    paid = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()
    assert (paid["state"], paid["provider"], paid["payment_id"]) == (
        "paid",
        "stripe",
        order["stripe"]["payment_intent"],
    )
    audit(shop)

    # A second purchase: the same Stripe.js (one <script>) and the same card field.
    page.get_by_test_id("checkout-done").click()
    open_checkout(page, console)
    expect(page.get_by_test_id("card-mount").get_by_placeholder("number")).to_have_count(1)
    expect(page.locator("script[data-testid=stripe-js]")).to_have_count(1)
    console.assert_clean()


@BOTH_SIZES
def test_a_declined_card_says_so_credits_nothing_and_the_checkout_still_pays(
    shop: Books,
    localstripe: LocalStripe,
    browser: Browser,
    console: ConsoleWatch,
    size: dict[str, int],
) -> None:
    api = shop.api
    page, viewer = sign_in_to_shop(browser, console, shop.base_url, size)
    name = "phone" if size["width"] < 600 else "desktop"
    open_checkout(page, console)
    reset_layout_shift(page)

    type_card(page, CARD_DECLINED)
    order = pay(page, localstripe)
    state = page.get_by_test_id("purchase-state")
    expect(state).to_have_text(DECLINED)
    expect(state).to_have_attribute("data-state", "failed")
    expect(page.get_by_test_id("pay")).to_be_enabled()
    expect(page.get_by_test_id("checkout-back")).to_be_enabled()
    expect(page.get_by_test_id("shop")).to_be_visible()
    screenshot(page, f"{name}-declined")
    assert_page_quality(page, console)

    # Nothing credited: no coins, no ledger entry, the order still waits for a payment.
    assert api.coins(viewer) == 0
    assert api.ledger(viewer) == []
    pending = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()
    assert pending["state"] == "pending", pending
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", "0")

    # Pay again: on the same order and PaymentIntent (no second order), with Stripe's 3D Secure
    # again. (localstripe cannot charge a PaymentIntent a second time after a declined charge,
    # so the buyer gives up at 3D Secure here: the checkout says it failed and stays usable.)
    orders: list[str] = []
    page.on(
        "request",
        lambda r: orders.append(r.url) if r.url.endswith("/v1/purchases") and r.method == "POST" else None,
    )
    page.get_by_test_id("pay").click()
    page.get_by_role("button", name="Fail authentication").click()
    expect(state).to_have_attribute("data-state", "failed")
    expect(page.get_by_test_id("pay")).to_be_enabled()
    assert orders == []

    # Back to the packages, the package again, another card: a new order, paid once, exactly
    # the package's coins. The declined order is never credited (it expires unpaid).
    page.get_by_test_id("checkout-back").click()
    page.get_by_test_id(f"package-{PACKAGE}").click()
    expect(page.get_by_test_id("pay")).to_be_enabled()
    expect(state).to_have_text("")
    type_card(page, CARD_PAID)
    paid = pay(page, localstripe)
    assert paid["order_id"] != order["order_id"]
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", str(COINS), timeout=20_000)
    expect(state).to_have_attribute("data-state", "paid")
    assert api.coins(viewer) == COINS
    [entry] = api.ledger(viewer)
    assert (entry["kind"], entry["delta"], entry["ref"]) == ("purchase", COINS, paid["order_id"])
    declined = api.http.get(f"/v1/purchases/{order['order_id']}", headers=api.auth(viewer)).json()
    assert declined["state"] == "pending", declined
    expect(page.locator("script[data-testid=stripe-js]")).to_have_count(1)
    audit(shop)
    assert_page_quality(page, console)


def test_without_stripe_the_checkout_is_the_sandbox_as_before(
    site: ServerProcess, site_api: Api, browser: Browser, console: ConsoleWatch
) -> None:
    """A server without Stripe: no card field and no Stripe.js; Pay pays through the sandbox."""
    page, viewer = sign_in_to_shop(browser, console, site.base_url, PHONE_SIZE)
    page.get_by_test_id("open-shop").click()
    page.get_by_test_id(f"package-{PACKAGE}").click()
    expect(page.get_by_test_id("sandbox-hint")).to_be_visible()
    expect(page.get_by_test_id("card-field")).to_be_hidden()
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("purchase-state")).to_have_text(
        f"Paid: {COINS} coins added. Your balance is {COINS} coins."
    )
    expect(page.get_by_test_id("balance")).to_have_attribute("data-coins", str(COINS))
    assert site_api.coins(viewer) == COINS
    expect(page.locator("script[data-testid=stripe-js]")).to_have_count(0)
    assert_page_quality(page, console)


def test_only_the_checkout_page_lets_stripe_in(shop: Books, localstripe: LocalStripe) -> None:
    """With Stripe on, the viewer page's policy adds Stripe.js's origin for scripts, Stripe's
    API for calls and its frames; every other page keeps to its own files."""
    stand_in = localstripe.url.rstrip("/")
    policy = csp(shop.api.http.get("/").headers)
    assert policy["script-src"] == f"'self' {stand_in}"
    assert policy["connect-src"] == f"'self' {stand_in}"
    assert policy["frame-src"] == stand_in
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    for path in ("/creator", "/v/any", "/overlay/any"):
        other = csp(shop.api.http.get(path).headers)
        assert other["script-src"] == "'self'" and other["connect-src"] == "'self'", path
        assert "frame-src" not in other, path
