// The meeting room: my microphone, everyone's dialogue boxes live, participants, chat.
import { api, get, post, explain } from "./api.js";
import { h, append, avatar, clear, wallTime } from "./dom.js";
import { DialogueBoxes } from "./boxes.js";
import { LiveMeeting } from "./live.js";
import { LiveInsights } from "./insights.js";
import { MicStream, microphones } from "./mic.js";

const SPEAKING_WINDOW_MS = 2500; // a live box updated this recently means its speaker is talking
const EPOCH_RETRY_MS = 3000;

function stateBadge(label) {
  const el = h("span", { class: "state", dataset: { state: "idle" } }, `${label}: off`);
  el.set = (state, why) => {
    el.dataset.state = state;
    el.textContent = `${label}: ${state}${why ? ` (${why})` : ""}`;
  };
  return el;
}

export async function roomPage(root, me, meetingId) {
  const [meeting, roster, history] = await Promise.all([
    get(`/v1/meetings/${meetingId}`),
    get(`/v1/meetings/${meetingId}/participants`),
    get(`/v1/meetings/${meetingId}/chat`),
  ]);
  document.title = `${meeting.title} · Palaver`;
  const people = new Map(roster.participants.map((p) => [p.user_id, p]));
  // Wall time of media time 0: the server knows it once the meeting's audio has started (a page with no
  // microphone of its own learns it from there too); asked again, at most every few seconds, until known.
  let epochMs = meeting.media_epoch_ms ?? null;
  let epochAskedAt = -Infinity;
  const lastLive = new Map(); // speaker_id -> time a live revision of theirs arrived

  const title = h("h1", {}, meeting.title);
  const ended = h("p", { class: "muted", role: "status" });
  const liveState = stateBadge("Live");
  const micState = stateBadge("Microphone");
  const meter = h("meter", { class: "level", min: 0, max: 0.3, value: 0, "aria-label": "Microphone level" });
  const devices = h("select", { class: "devices", "aria-label": "Microphone" });
  const muteButton = h("button", { type: "button", class: "secondary", disabled: true, "aria-pressed": "false" }, "Mute");
  const micButton = h("button", { type: "button", id: "start-mic" }, "Start microphone");
  const micError = h("p", { class: "error", role: "alert" });
  const canSpeak = meeting.status === "open" && meeting.role !== "viewer";

  const transcript = h("section", { class: "transcript", tabindex: "0" });
  const boxes = new DialogueBoxes(transcript, { me, people, epochMs: () => epochMs });
  const peopleList = h("ul", { class: "people", "aria-label": "Participants" });
  const chatList = h("ol", { class: "chat", "aria-label": "Chat" });
  const insights = new LiveInsights(meetingId);
  const chatIds = new Set();

  function drawPeople() {
    const now = performance.now();
    clear(peopleList);
    for (const p of people.values()) {
      const speaking = now - (lastLive.get(p.user_id) || -1e9) < SPEAKING_WINDOW_MS;
      peopleList.append(h("li", { class: speaking ? "speaking" : "", dataset: { userId: p.user_id } },
        avatar(p.username, p.profile_pic_url),
        h("span", {}, p.user_id === me.user_id ? `${p.username} (you)` : p.username),
        h("span", { class: "muted" }, p.role), speaking && h("span", { class: "live-dot" }, "speaking")));
    }
  }

  function addChat(m) {
    if (chatIds.has(m.message_id)) return;
    chatIds.add(m.message_id);
    const who = m.user_id === me.user_id ? "You" : (people.get(m.user_id) || {}).username || m.user_id;
    chatList.append(h("li", { dataset: { messageId: m.message_id } },
      h("span", { class: "speaker" }, who), " ", h("time", { class: "muted" }, wallTime(m.sent_at_ms)),
      h("p", {}, m.text)));
    chatList.scrollTop = chatList.scrollHeight;
  }
  history.messages.forEach(addChat);

  async function learnEpoch() {
    if (epochMs !== null || performance.now() - epochAskedAt < EPOCH_RETRY_MS) return;
    epochAskedAt = performance.now();
    const fresh = await get(`/v1/meetings/${meetingId}`).catch(() => null);
    if (fresh && fresh.media_epoch_ms != null && epochMs === null) {
      epochMs = fresh.media_epoch_ms;
      boxes.refreshAll();
    }
  }

  async function refreshPeople() {
    const fresh = await get(`/v1/meetings/${meetingId}/participants`).catch(() => null);
    if (!fresh) return;
    people.clear();
    fresh.participants.forEach((p) => people.set(p.user_id, p));
    drawPeople();
    boxes.refreshAll();
  }

  const live = new LiveMeeting(meetingId, {
    dialogue: (d) => {
      if (!people.has(d.speaker_id)) refreshPeople();
      if (d.status === "live") lastLive.set(d.speaker_id, performance.now());
      learnEpoch();
      boxes.upsert(d);
    },
    removed: (id) => boxes.remove(id),
    chat: addChat,
    participant: () => refreshPeople(),
    meeting: (m) => {
      if (m.title) title.textContent = m.title;
      if (m.action === "ended" && mic) mic.stop();
      if (m.action === "ended") ended.textContent = "The meeting has ended.";
      if (m.action === "deleted") location.assign("/");
    },
    summary: (m) => insights.summary(m),
    insights: (m) => insights.result(m),
    other: () => {},
    state: (s, why) => {
      liveState.set(s, why);
      if (s === "live") insights.refresh(); // the socket's snapshot has no result: read the stored one
    },
  });
  live.open();
  setInterval(drawPeople, 1000);
  drawPeople();

  let mic = null;
  micButton.addEventListener("click", async () => {
    if (mic) {
      micButton.disabled = true;
      await mic.stop();
      mic = null;
      micButton.textContent = "Start microphone";
      micButton.disabled = false;
      muteButton.disabled = true;
      return;
    }
    micError.textContent = "";
    mic = new MicStream(meetingId, {
      onState: (s, why) => { micState.set(s, why); if (s === "failed") micError.textContent = why || ""; },
      onLevel: (level) => { meter.value = level; },
      onReady: () => learnEpoch(),
    });
    try {
      await mic.start(devices.value || undefined);
      micButton.textContent = "Stop microphone";
      muteButton.disabled = false;
      const found = await microphones();
      clear(devices).append(...found.map((d, i) => h("option", { value: d.deviceId }, d.label || `Microphone ${i + 1}`)));
    } catch (e) {
      micError.textContent = `Microphone: ${explain(e)}`;
      mic = null;
    }
  });
  devices.addEventListener("change", () => mic && mic.switchDevice(devices.value));
  muteButton.addEventListener("click", () => {
    if (!mic) return;
    mic.setMuted(!mic.muted);
    muteButton.textContent = mic.muted ? "Unmute" : "Mute";
    muteButton.setAttribute("aria-pressed", String(mic.muted));
  });

  const chatError = h("p", { class: "error", role: "alert" });
  const chatForm = h("form", { class: "chat-form" },
    h("input", { name: "text", maxlength: 4000, required: true, "aria-label": "Message", autocomplete: "off" }),
    h("button", { type: "submit" }, "Send"), chatError);
  chatForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = chatForm.elements.text;
    try {
      addChat(await post(`/v1/meetings/${meetingId}/chat`, { text: input.value }));
      input.value = "";
      chatError.textContent = "";
    } catch (e) {
      chatError.textContent = explain(e);
    }
  });

  const owner = meeting.role === "owner" || meeting.role === "admin";
  const endButton = owner && meeting.status === "open" && h("button", { type: "button", class: "danger", on: { click: async () => {
    if (!confirm("End the meeting for everyone?")) return;
    if (mic) await mic.stop();
    await post(`/v1/meetings/${meetingId}/end`);
    location.assign(`/meetings/${meetingId}/review`);
  } } }, "End meeting");

  // The owner can change the words the speech decoder listens for while the meeting goes on: the
  // decodes asked for after the workers have the change (the next utterance) use them.
  const glossaryStatus = h("p", { class: "muted", role: "status" });
  const glossaryForm = owner && meeting.status === "open" && h("form", { class: "glossary-form", id: "glossary" },
    h("label", {}, "Words to listen for (one a line or comma-separated)",
      h("textarea", { name: "glossary", rows: 3 }, (meeting.glossary || []).join("\n"))),
    h("button", { type: "submit", class: "secondary" }, "Save words"), glossaryStatus);
  if (glossaryForm) {
    glossaryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const glossary = glossaryForm.elements.glossary.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
      try {
        const changed = await api("PATCH", `/v1/meetings/${meetingId}`, { glossary });
        glossaryForm.elements.glossary.value = changed.glossary.join("\n");
        glossaryStatus.className = "muted";
        glossaryStatus.textContent = "Saved: used from the next utterance on.";
      } catch (e) {
        glossaryStatus.className = "error";
        glossaryStatus.textContent = explain(e);
      }
    });
  }

  append(root, h("div", { class: "room" },
    h("div", { class: "room-head" },
      title,
      h("div", { class: "states" }, liveState, micState),
      h("a", { class: "button secondary", href: `/meetings/${meetingId}/review` }, "Review"), endButton),
    ended,
    canSpeak ? h("div", { class: "controls" }, micButton, muteButton, devices, meter, micError)
             : h("p", { class: "muted" }, meeting.status === "open" ? "You are a viewer: you can listen in, not speak." : "This meeting has ended."),
    h("div", { class: "room-body" }, transcript,
      h("aside", { class: "side" }, insights.summaryPanel, insights.taskPanel, h("h2", {}, "Participants"), peopleList,
        h("h2", {}, "Chat"), chatList, meeting.role !== "viewer" && meeting.status === "open" && chatForm,
        glossaryForm))));
}
