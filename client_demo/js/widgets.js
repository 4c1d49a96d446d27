// widgets.js — the leaderboard and the goal bar, shared by the viewer page and the overlay.

import { formatNumber } from "./api.js";

/** The top gifters (`leaderboard` of a snapshot or event): highest first. */
export function renderLeaderboard(list, leaders, limit = 10) {
  list.replaceChildren(
    ...leaders.slice(0, limit).map((leader) => {
      const item = document.createElement("li");
      item.dataset.userId = leader.id;
      const name = document.createElement("span");
      name.className = "leader-name";
      name.textContent = leader.name;
      const coins = document.createElement("span");
      coins.className = "leader-coins";
      coins.textContent = formatNumber(leader.coins);
      item.append(name, coins);
      return item;
    }),
  );
}

/**
 * The goal bar: `goal` is {target, progress}; target is null when the creator set none.
 * Expects a container with [data-testid=goal-fill] and [data-testid=goal-text] inside.
 */
export function renderGoal(container, { target, progress }) {
  const fill = container.querySelector('[data-testid="goal-fill"]');
  const text = container.querySelector('[data-testid="goal-text"]');
  container.dataset.target = target ?? "";
  container.dataset.progress = progress;
  if (target === null || target === undefined) {
    fill.style.width = "0%";
    text.textContent = `${formatNumber(progress)} coins gifted`;
    container.classList.add("no-target");
    return;
  }
  container.classList.remove("no-target");
  const percent = Math.min(100, (progress / target) * 100);
  fill.style.width = `${percent}%`;
  text.textContent = `Goal: ${formatNumber(progress)} / ${formatNumber(target)} coins`;
  container.classList.toggle("reached", progress >= target);
}
