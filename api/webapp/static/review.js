// A meeting's review: the transcript to correct (edit, reset, delete, history), export, summary and tasks.
import { api, get, explain, ApiError } from "./api.js";
import { h, append, clear, dateTime } from "./dom.js";
import { DialogueBoxes } from "./boxes.js";
import { reviewInsights } from "./insights.js";

const FORMATS = [["markdown", "Markdown"], ["json", "JSON"], ["srt", "SRT"], ["vtt", "WebVTT"]];
const TASK_STATUSES = ["pending", "in_progress", "done", "cancelled"];  // pending: not started

async function optional(path) {
  try {
    return await get(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function historyList(edits, people) {
  if (!edits.length) return h("p", { class: "muted" }, "No edits: the machine's text.");
  return h("ol", { class: "history" }, edits.map((e) => h("li", {},
    h("span", { class: "muted" }, `${dateTime(e.edited_at_ms)} · ${(people.get(e.editor) || {}).username || e.editor} · ${e.action}`),
    e.text !== null && h("p", {}, e.text))));
}

function taskRow(meetingId, item, people, canWrite) {
  const patch = (fields) => api("PATCH", `/v1/meetings/${meetingId}/action-items/${item.action_item_id}`, fields);
  const done = h("input", { type: "checkbox", checked: item.status === "done", disabled: !canWrite, "aria-label": "Done" });
  done.addEventListener("change", () => patch({ status: done.checked ? "done" : "pending" }).catch((e) => alert(explain(e))));
  const description = h("span", { class: "task-text", contenteditable: canWrite ? "plaintext-only" : false }, item.description);
  description.addEventListener("blur", () => {
    const text = description.textContent.trim();
    if (text && text !== item.description) patch({ description: text }).then(() => { item.description = text; }).catch((e) => alert(explain(e)));
  });
  const status = h("select", { disabled: !canWrite, "aria-label": "Status" },
    TASK_STATUSES.map((s) => h("option", { value: s, selected: s === item.status }, s.replace("_", " "))));
  status.addEventListener("change", () => patch({ status: status.value }).catch((e) => alert(explain(e))));
  const assignee = (people.get(item.assigned_to) || {}).username || item.assigned_to || "unassigned";
  return h("li", { class: "task", dataset: { actionItemId: item.action_item_id } }, done, description,
    h("span", { class: "muted" }, ` · ${assignee}${item.due_date ? ` · due ${item.due_date}` : ""} · ${item.priority}`), status);
}

function taskList(meetingId, tasks, people, canWrite) {
  return tasks && tasks.length
    ? h("ul", { class: "tasks task-list" }, tasks.map((t) => taskRow(meetingId, t, people, canWrite)))
    : h("p", { class: "muted task-list" }, "No action items yet.");
}

export async function reviewPage(root, me, meetingId) {
  const [meeting, roster, dialogues, tasks, insights] = await Promise.all([
    get(`/v1/meetings/${meetingId}`),
    get(`/v1/meetings/${meetingId}/participants`),
    get(`/v1/meetings/${meetingId}/dialogues`),
    optional(`/v1/meetings/${meetingId}/action-items`),
    optional(`/v1/meetings/${meetingId}/insights`),
  ]);
  document.title = `${meeting.title} · review · Palaver`;
  const people = new Map(roster.participants.map((p) => [p.user_id, p]));
  const canWrite = meeting.role !== "viewer";
  const status = h("p", { class: "muted", role: "status" });
  const base = `/v1/meetings/${meetingId}/dialogues`;

  const act = async (what, request) => {
    try {
      await request();
      status.textContent = `${what}: saved; the transcript shows it in a moment.`;
      setTimeout(reload, 1500);
    } catch (e) {
      status.textContent = `${what}: ${explain(e)}`;
    }
  };

  const actions = (d) => {
    if (!canWrite) return null;
    const history = h("div", { class: "history-slot" });
    const edit = () => {
      const box = document.getElementById(`d-${d.dialogue_id}`);
      const area = h("textarea", { rows: 3, "aria-label": "Corrected text" });
      area.value = d.text;
      const save = h("button", { type: "button" }, "Save");
      const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
      const editor = h("div", { class: "editor" }, area, save, cancel);
      box.querySelector(".words").replaceWith(editor);
      area.focus();
      cancel.addEventListener("click", () => boxes.upsert(d));
      save.addEventListener("click", () => act("Edit", () => api("PUT", `${base}/${d.dialogue_id}`, { text: area.value })));
    };
    return h("div", { class: "box-actions" },
      h("button", { type: "button", class: "link", on: { click: edit } }, "Edit"),
      d.edited && h("button", { type: "button", class: "link", on: { click: () => act("Reset", () => api("POST", `${base}/${d.dialogue_id}/reset`, {})) } }, "Reset"),
      h("button", { type: "button", class: "link", on: { click: () => confirm("Delete this box from the transcript?") &&
        act("Delete", () => api("DELETE", `${base}/${d.dialogue_id}`)) } }, "Delete"),
      h("button", { type: "button", class: "link", on: { click: async () => {
        const found = await get(`${base}/${d.dialogue_id}/history`);
        clear(history).append(historyList(found.edits, people));
      } } }, "History"),
      history);
  };

  const transcript = h("section", { class: "transcript review" });
  const epochMs = meeting.media_epoch_ms ?? null;
  const boxes = new DialogueBoxes(transcript, { me, people, actions, epochMs: () => epochMs });
  const draw = (rows) => {
    for (const d of rows.dialogues) boxes.upsert(d);
    const present = new Set(rows.dialogues.map((d) => d.dialogue_id));
    for (const id of [...boxes.boxes.keys()]) if (!present.has(id)) boxes.remove(id);
  };
  async function reload() {
    draw(await get(base));
  }
  draw(dialogues);

  const exports = h("div", { class: "exports" }, "Export: ",
    FORMATS.map(([format, label]) => h("a", { class: "button secondary", href: `/v1/meetings/${meetingId}/export?format=${format}`, download: "" }, label)));
  const taskPanel = h("section", { class: "card", id: "tasks" }, h("h2", {}, "Action items"),
    taskList(meetingId, tasks, people, canWrite));
  const result = reviewInsights(meetingId, insights, { canWrite, onResult: async (found) => {
    const fresh = await get(`/v1/meetings/${meetingId}/action-items?run=${encodeURIComponent(found.run)}`).catch(() => null);
    if (fresh) taskPanel.querySelector(".task-list").replaceWith(taskList(meetingId, fresh, people, canWrite));
  } });

  append(root, h("div", { class: "review-page" },
    h("div", { class: "room-head" }, h("h1", {}, meeting.title),
      h("span", { class: "muted" }, `${dateTime(meeting.created_at_ms)} · ${meeting.status}`),
      meeting.status === "open" && h("a", { class: "button", href: `/meetings/${meetingId}` }, "Back to the room")),
    exports, status,
    h("div", { class: "room-body" }, transcript, h("aside", { class: "side" }, result.summary, taskPanel, result.details))));

  const target = location.hash.match(/^#d=([A-Za-z0-9._-]+)$/);
  const box = target && document.getElementById(`d-${target[1]}`);
  if (box) {
    box.classList.add("highlight");
    box.scrollIntoView({ block: "center" });
  }
}
