// tray.js — the gift tray, shared by the viewer page and the video page: one button per gift
// of the catalog, marked when the balance can't pay for it, and a tap that acts on the gift
// under the finger when it landed.

import { formatNumber } from "./api.js";

/** Fill `tray` with one button per gift of `catalog` (a GiftCatalog). */
export function renderTray(tray, catalog) {
  tray.replaceChildren(
    ...catalog.list.map((gift) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "gift";
      button.dataset.testid = `gift-${gift.id}`;
      button.dataset.giftId = gift.id;
      button.dataset.tier = String(catalog.tier(gift.id));
      button.title = gift.streakable ? `${gift.name}: tap again quickly for a combo` : gift.name;
      const name = document.createElement("span");
      name.className = "gift-name";
      name.textContent = gift.name;
      const price = document.createElement("span");
      price.className = "price";
      price.textContent = ` ${formatNumber(gift.coins)} ${gift.coins === 1 ? "coin" : "coins"}`;
      // Read out, not drawn: the lock and the amber price say it to the eye.
      const short = document.createElement("span");
      short.className = "gift-short visually-hidden";
      button.append(catalog.badge(gift.id), name, price, short);
      return button;
    }),
  );
}

/** Gifts that cost more than `coins` (null: not known yet) are marked, to the eye and in their names. */
export function markAffordable(tray, catalog, coins) {
  for (const button of tray.querySelectorAll(".gift")) {
    const gift = catalog.byId.get(button.dataset.giftId);
    const affordable = coins === null || gift.coins <= coins;
    button.dataset.affordable = String(affordable);
    button.querySelector(".gift-short").textContent = affordable ? "" : ", not enough coins";
  }
}

/** Call `onTap(giftId)` for each tap on an enabled gift of `tray`. */
export function wireTray(tray, onTap) {
  let pressed = null;
  tray.addEventListener("pointerdown", (event) => {
    pressed = event.target.closest(".gift");
  });
  tray.addEventListener("click", (event) => {
    const button = event.target.closest(".gift") ?? pressed;
    pressed = null;
    if (button && !button.disabled) onTap(button.dataset.giftId);
  });
}
