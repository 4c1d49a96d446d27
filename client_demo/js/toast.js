// toast.js — notices that float over the page and never move it: errors, confirmations,
// connection news. The page under them stays where it was, so the next tap lands on what
// the finger was aiming at.
//
// toast(text, { kind, action, ms, key }):
//   kind   "error" (role=alert, stays 6 s), "ok" or "info" (role=status, 3.5 s)
//   action { label, run }: one button in the toast (for example "Buy coins")
//   ms     how long it stays; 0 keeps it until dismissed
//   key    a toast with the same key replaces the earlier one instead of stacking
// It answers { close() }.

const MAX_TOASTS = 3;
const DEFAULT_MS = { error: 6000, ok: 3500, info: 3500 };

let region = null;

function toastRegion() {
  if (region?.isConnected) return region;
  region = document.createElement("section");
  region.className = "toasts";
  region.dataset.testid = "toasts";
  region.setAttribute("aria-label", "Notices");
  document.body.append(region);
  return region;
}

export function toast(text, { kind = "info", action = null, ms = DEFAULT_MS[kind] ?? 3500, key = null } = {}) {
  const list = toastRegion();
  if (key !== null) list.querySelector(`[data-key="${CSS.escape(key)}"]`)?.remove();

  const item = document.createElement("div");
  item.className = "toast";
  item.dataset.testid = "toast";
  item.dataset.kind = kind;
  if (key !== null) item.dataset.key = key;
  item.setAttribute("role", kind === "error" ? "alert" : "status");

  const words = document.createElement("span");
  words.className = "toast-text";
  words.dataset.testid = "toast-text";
  words.textContent = text;
  item.append(words);

  let timer = null;
  const close = () => {
    clearTimeout(timer);
    item.remove();
  };
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.testid = "toast-action";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      close();
      action.run();
    });
    item.append(button);
  }
  const dismiss = document.createElement("button");
  dismiss.type = "button";
  dismiss.className = "link toast-close";
  dismiss.dataset.testid = "toast-close";
  dismiss.setAttribute("aria-label", "Dismiss");
  dismiss.textContent = "✕";
  dismiss.addEventListener("click", close);
  item.append(dismiss);

  list.append(item);
  while (list.children.length > MAX_TOASTS) list.firstElementChild.remove();
  if (ms > 0) timer = setTimeout(close, ms);
  return { close };
}

/** Every toast with this key (or all of them) goes. */
export function clearToasts(key = null) {
  if (!region) return;
  const items = key === null ? region.querySelectorAll(".toast") : region.querySelectorAll(`[data-key="${CSS.escape(key)}"]`);
  items.forEach((item) => item.remove());
}
