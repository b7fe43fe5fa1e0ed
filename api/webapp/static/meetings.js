// My meetings: create one, share an invite link, open its room or its review; and the invite link's page.
import { get, post, explain } from "./api.js";
import { h, append, dateTime } from "./dom.js";

function inviteButton(meeting) {
  const out = h("span", { class: "invite" });
  const button = h("button", { type: "button", class: "secondary", on: { click: async () => {
    try {
      const link = await post(`/v1/meetings/${meeting.meeting_id}/links`, { role: "participant" });
      const url = `${location.origin}/join#${link.token}`;
      const field = h("input", { readonly: true, value: url, "aria-label": "Invite link", class: "invite-url" });
      out.replaceChildren(field);
      field.select();
      if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
    } catch (e) {
      out.replaceChildren(h("span", { class: "error" }, explain(e)));
    }
  } } }, "Invite link");
  out.append(button);
  return out;
}

function meetingRow(meeting) {
  const open = meeting.status === "open";
  return h("li", { class: "meeting", dataset: { meetingId: meeting.meeting_id } },
    h("div", { class: "meeting-title" },
      h("a", { href: open ? `/meetings/${meeting.meeting_id}` : `/meetings/${meeting.meeting_id}/review` }, meeting.title),
      h("span", { class: `badge ${meeting.status}` }, open ? "open" : "ended")),
    h("div", { class: "muted" }, `${dateTime(meeting.created_at_ms)} · you are ${meeting.role}`),
    h("div", { class: "actions" },
      open && h("a", { class: "button", href: `/meetings/${meeting.meeting_id}` }, "Join"),
      h("a", { class: "button secondary", href: `/meetings/${meeting.meeting_id}/review` }, "Review"),
      open && (meeting.role === "owner" || meeting.role === "admin") && inviteButton(meeting)));
}

export async function meetingsPage(root) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card", id: "new-meeting" },
    h("h2", {}, "New meeting"),
    h("label", {}, "Title", h("input", { name: "title", required: true, maxlength: 200 })),
    h("label", {}, "Agenda (one item a line, optional)", h("textarea", { name: "agenda", rows: 3 })),
    // The speech decoder is primed with these (and everyone's names): the words it would otherwise miss.
    h("label", {}, "Words to listen for: names, products, jargon (one a line or comma-separated, optional)",
      h("textarea", { name: "glossary", rows: 2 })),
    error, h("button", { type: "submit" }, "Create and join"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const agenda = String(data.get("agenda") || "").split("\n").map((s) => s.trim()).filter(Boolean);
    const glossary = String(data.get("glossary") || "").split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
    try {
      const meeting = await post("/v1/meetings", { title: String(data.get("title")), agenda, glossary });
      location.assign(`/meetings/${meeting.meeting_id}`);
    } catch (e) {
      error.textContent = explain(e);
    }
  });
  const { meetings } = await get("/v1/meetings?limit=200");
  const list = meetings.length
    ? h("ul", { class: "meetings" }, meetings.map(meetingRow))
    : h("p", { class: "muted" }, "No meetings yet: create one, or open an invite link someone sent you.");
  append(root, h("div", { class: "columns" }, h("section", {}, h("h1", {}, "My meetings"), list), form));
}

export async function joinPage(root) {
  const token = decodeURIComponent(location.hash.slice(1));
  if (!token) {
    append(root, h("p", { class: "error" }, "This invite link has no token."));
    return;
  }
  append(root, h("p", { class: "muted" }, "Joining…"));
  const meeting = await post("/v1/meeting-links/join", { token });
  location.replace(meeting.status === "open" ? `/meetings/${meeting.meeting_id}` : `/meetings/${meeting.meeting_id}/review`);
}
