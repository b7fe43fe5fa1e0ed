// Dialogue boxes: one per speaker turn, in media-time order, several live at once when people talk over
// each other. Settled words (final utterances) are drawn plainly, the tentative tail dimmed. A reader who
// scrolled up is left where they are; a screen reader hears each turn once it is final.
import { h, clear, avatar, clock, wallTime } from "./dom.js";

export class DialogueBoxes {
  constructor(container, { me, people, epochMs = () => null, actions = null }) {
    this.container = container;
    this.me = me;
    this.people = people; // user_id -> {username, profile_pic_url}
    this.epochMs = epochMs; // wall time of media time 0, when known
    this.actions = actions; // (dialogue, box) -> [elements], for the review page's edit buttons
    this.boxes = new Map(); // dialogue_id -> {el, d}
    this.announced = new Set();
    this.list = h("ol", { class: "dialogues", "aria-label": "Transcript" });
    this.announcer = h("div", { class: "visually-hidden", "aria-live": "polite", "aria-atomic": "false" });
    this.more = h("button", { type: "button", class: "more hidden", on: { click: () => this.scrollToEnd() } }, "New words ↓");
    clear(container).append(this.list, this.more, this.announcer);
    container.addEventListener("scroll", () => { if (this.nearEnd()) this.more.classList.add("hidden"); });
  }

  nearEnd() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 48;
  }

  scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
    this.more.classList.add("hidden");
  }

  name(userId) {
    if (this.me && userId === this.me.user_id) return "You";
    const person = this.people.get(userId);
    return person ? person.username : userId;
  }

  text(d) {
    const parts = d.utterances && d.utterances.length && !d.edited
      ? d.utterances.map((u) => h("span", { class: u.final ? "settled" : "tentative" }, u.text.trim() + " "))
      : [h("span", { class: d.status === "final" ? "settled" : "tentative" }, d.text)];
    return h("p", { class: "words" }, parts);
  }

  render(d) {
    const person = this.people.get(d.speaker_id) || {};
    const epoch = this.epochMs();
    const live = d.status === "live";
    const el = h("li", { class: `box ${live ? "live" : "final"}${d.speaker_id === this.me?.user_id ? " mine" : ""}`,
                         id: `d-${d.dialogue_id}`, dataset: { dialogueId: d.dialogue_id, speakerId: d.speaker_id, start: d.start_ms } },
      avatar(person.username || d.speaker_id, person.profile_pic_url),
      h("div", { class: "box-body" },
        h("div", { class: "box-head" },
          h("span", { class: "speaker" }, this.name(d.speaker_id)),
          h("time", { class: "clock", title: "Meeting clock" }, clock(d.start_ms)),
          epoch !== null && h("time", { class: "wall muted", title: "Wall clock", datetime: new Date(epoch + d.start_ms).toISOString() },
            wallTime(epoch + d.start_ms)),
          live && h("span", { class: "live-dot", title: "Speaking" }, "live"),
          d.edited && h("span", { class: "badge" }, "edited")),
        this.text(d),
        this.actions && this.actions(d)));
    return el;
  }

  upsert(d) {
    const follow = this.nearEnd();
    const el = this.render(d);
    const known = this.boxes.get(d.dialogue_id);
    if (known) known.el.replaceWith(el);
    else this.insertInOrder(el, d);
    this.boxes.set(d.dialogue_id, { el, d });
    if (known && known.d.start_ms !== d.start_ms) this.insertInOrder(el, d);
    if (d.status === "final" && !this.announced.has(d.dialogue_id)) {
      this.announced.add(d.dialogue_id);
      this.announcer.append(h("p", {}, `${this.name(d.speaker_id)}: ${d.text}`));
      while (this.announcer.childElementCount > 20) this.announcer.firstChild.remove();
    }
    if (follow) this.scrollToEnd();
    else this.more.classList.remove("hidden");
  }

  insertInOrder(el, d) {
    let before = null;
    for (const child of this.list.children) {
      if (child === el) continue;
      const start = Number(child.dataset.start);
      if (start > d.start_ms || (start === d.start_ms && child.dataset.speakerId > d.speaker_id)) { before = child; break; }
    }
    this.list.insertBefore(el, before);
  }

  remove(dialogueId) {
    const known = this.boxes.get(dialogueId);
    if (known) known.el.remove();
    this.boxes.delete(dialogueId);
  }

  refreshAll() {
    for (const { d } of [...this.boxes.values()]) this.upsert(d);
  }
}
