// videos.js — the creator dashboard's Videos section: publish a video record (a title and the
// URL where its media lives; the server keeps metadata only) and list the creator's videos
// with the coins gifted on each and a link to its page (/v/{video_id}), where fans send gifts.

import { api, byTestId, formatNumber } from "./api.js";
import { describeError } from "./errors.js";

export class VideosSection {
  constructor() {
    this.token = null;
    this.creatorId = null;
    byTestId("video-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.publish();
    });
  }

  /** The creator signed in: list their videos. */
  async signedIn(token, creatorId) {
    this.token = token;
    this.creatorId = creatorId;
    await this.refresh();
  }

  signedOut() {
    this.token = null;
    this.creatorId = null;
    byTestId("videos").replaceChildren();
    byTestId("video-state").textContent = "";
  }

  /** Read the creator's videos again (their coins change with every gift). */
  async refresh() {
    if (!this.creatorId) return;
    const { videos } = await api(`/v1/creators/${encodeURIComponent(this.creatorId)}/videos`);
    byTestId("videos").replaceChildren(...videos.map((video) => videoItem(video)));
    byTestId("videos-empty").hidden = videos.length > 0;
  }

  async publish() {
    const status = byTestId("video-state");
    const title = byTestId("video-title-input");
    const url = byTestId("video-url-input");
    const button = byTestId("video-publish");
    button.disabled = true;
    try {
      const video = await api("/v1/videos", { method: "POST", body: { title: title.value.trim(), url: url.value.trim() }, token: this.token });
      status.dataset.state = "ok";
      status.textContent = `Published “${video.title}”.`;
      title.value = "";
      url.value = "";
      await this.refresh();
    } catch (error) {
      status.dataset.state = "error";
      status.textContent =
        error.code === "invalid_request"
          ? "Give the video a title (up to 120 characters) and an http(s) link to it."
          : describeError(error.code, error.message);
    } finally {
      button.disabled = false;
    }
  }
}

function videoItem(video) {
  const item = document.createElement("li");
  item.dataset.testid = "video-item";
  item.dataset.videoId = video.id;
  const link = document.createElement("a");
  link.href = `/v/${encodeURIComponent(video.id)}`;
  link.textContent = video.title;
  link.className = "video-name";
  const coins = document.createElement("span");
  coins.className = "video-coins";
  coins.dataset.testid = "video-item-coins";
  coins.dataset.coins = video.coins;
  coins.textContent = `${formatNumber(video.coins)} ${video.coins === 1 ? "coin" : "coins"}`;
  item.append(link, coins);
  return item;
}
