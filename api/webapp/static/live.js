// The meeting's live socket (WS /v1/meetings/{m}/live), opened with the session cookie. It sends the stored
// dialogues, then every new revision; this keeps the newest revision of each dialogue, so a message seen
// twice (a reconnect, the replay of recent events) changes nothing. A dropped socket reconnects by itself
// with ?resume=N, N = the placed dialogues (final, and their position fixed) already held in an unbroken run
// from the first, so the server does not send the whole meeting again. A final dialogue not yet placed may
// still move, so it does not count. Other messages (chat, participants, meeting, summary, insights) go to
// their handlers by "type".
import { socketUrl } from "./api.js";

export class LiveMeeting {
  constructor(meetingId, handlers) {
    this.meetingId = meetingId;
    // {dialogue(d), removed(id), chat(m), participant(p), meeting(m), summary(m)?, insights(m)?, other(m),
    // state(s, why)}; the types are api/live_messages.py's. A type this page does not know goes to other().
    this.handlers = handlers;
    this.dialogues = new Map();
    this.placedPositions = new Set();
    this.chatSince = null; // the newest chat message's time: a resumed socket sends chat from then on
    this.closed = false;
    this.attempts = 0;
  }

  heldPlaced() {
    let n = 0;
    while (this.placedPositions.has(n)) n++;
    return n;
  }

  open() {
    if (this.closed) return;
    this.handlers.state(this.attempts ? "reconnecting" : "connecting");
    const query = new URLSearchParams();
    if (this.placedPositions.size) query.set("resume", String(this.heldPlaced()));
    if (this.chatSince !== null) query.set("chat_since_ms", String(this.chatSince));
    const search = query.size ? `?${query}` : "";
    const ws = new WebSocket(socketUrl(`/v1/meetings/${this.meetingId}/live${search}`));
    this.ws = ws;
    ws.onopen = () => { this.attempts = 0; this.handlers.state("live"); };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (ws !== this.ws || this.closed) return;
      if ([4401, 4403, 4404, 4000].includes(event.code)) { // nothing a reconnect could mend
        this.handlers.state("failed", `${event.code} ${event.reason}`);
        return;
      }
      this.attempts += 1;
      this.handlers.state("reconnecting", event.reason);
      const backoff = Math.min(4000, 250 * 2 ** Math.min(this.attempts - 1, 4));
      // A full server's 1013 ends in "retry after N s" (palaver/admission.py): wait that, plus up to half again
      // at random, so the sockets it refused at once do not all come back at once.
      const hint = event.code === 1013 && /retry after (\d+(?:\.\d+)?) s$/.exec(event.reason || "");
      const delay = hint ? Math.max(backoff, Number(hint[1]) * 1000 * (1 + 0.5 * Math.random())) : backoff;
      setTimeout(() => this.open(), delay);
    };
  }

  receive(message) {
    const type = message.type || (message.event === "dialogue.update" ? "dialogue" : message.event);
    if (type === "dialogue") this.dialogue(message);
    else if (type === "chat") {
      this.chatSince = Math.max(this.chatSince ?? 0, message.sent_at_ms);
      this.handlers.chat(message);
    } else if (type === "participant") this.handlers.participant(message);
    else if (type === "meeting") this.handlers.meeting(message);
    else if (type === "summary" && this.handlers.summary) this.handlers.summary(message);
    else if (type === "insights" && this.handlers.insights) this.handlers.insights(message);
    else this.handlers.other(message);
  }

  dialogue(d) {
    const known = this.dialogues.get(d.dialogue_id);
    if (known && known.revision >= d.revision) return;
    if (d.status === "retracted") {
      this.dialogues.delete(d.dialogue_id);
      this.handlers.removed(d.dialogue_id);
      return;
    }
    this.dialogues.set(d.dialogue_id, d);
    // A server from before "placed" sent final dialogues only once placed.
    if (d.placed ?? d.status === "final") this.placedPositions.add(d.position);
    this.handlers.dialogue(d, known);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000);
  }
}
