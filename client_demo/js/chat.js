// chat.js — how chat messages, room notices and joins look, shared by the viewer page and
// the overlay's chat widget.
//
// Names and texts come from other people: they are only ever set as textContent, so that
// `<img src=x onerror=…>` in a name or a message shows as those characters and runs nothing.

const BADGE_LABELS = { creator: "Creator", moderator: "Mod", top_gifter: "Top gifter" };

/** One `chat` event as a list item: badges, the sender's name, the text. */
export function chatItem(event) {
  const item = document.createElement("li");
  item.className = "chat-message";
  item.dataset.testid = "chat-message";
  item.dataset.eventId = event.event_id;
  item.dataset.senderId = event.sender.id;
  for (const badge of event.sender.badges ?? []) {
    const label = document.createElement("span");
    label.className = `chat-badge badge-${badge in BADGE_LABELS ? badge : "other"}`;
    label.dataset.testid = `badge-${badge}`;
    label.textContent = BADGE_LABELS[badge] ?? badge;
    item.append(label);
  }
  const name = document.createElement("span");
  name.className = "chat-name";
  name.dataset.testid = "chat-name";
  name.textContent = event.sender.name;
  const text = document.createElement("span");
  text.className = "chat-text";
  text.dataset.testid = "chat-text";
  text.textContent = event.text;
  item.append(name, " ", text);
  return item;
}

/** A line of the room's life in the chat: a gift, a follow, a share. */
export function noticeItem(kind, name, rest) {
  const item = document.createElement("li");
  item.className = `chat-notice notice-${kind}`;
  item.dataset.testid = `notice-${kind}`;
  const who = document.createElement("span");
  who.className = "chat-name";
  who.textContent = name;
  item.append(who, ` ${rest}`);
  return item;
}

/** "Ann joined", "Ann and Bo joined", "Ann and 12 others joined" for a `joins` event. */
export function joinsText({ count, users }) {
  const first = users[0]?.name ?? "Someone";
  const others = count - 1;
  if (others <= 0) return `${first} joined`;
  if (others === 1 && users[1]) return `${first} and ${users[1].name} joined`;
  return `${first} and ${others} others joined`;
}

/** Append to a chat list, dropping the oldest beyond `keep`, and keep it scrolled down if it was. */
export function appendToChat(list, item, keep) {
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(item);
  while (list.childElementCount > keep) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}
