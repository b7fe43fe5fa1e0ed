// What enrichment made of a meeting: its summary (Markdown through markdown.js, never HTML), its tasks,
// keywords, mood, agenda and metrics. The room shows the summary growing from the live socket's "summary"
// pieces and replaces it with each "insights" result; the review page shows the whole result and can ask for
// a new one ("Summarize now", POST .../enrichment). Results come from GET .../insights (on load and on every
// (re)connect of the socket: the socket's snapshot has none) and from "insights" messages.
import { get, post, explain, ApiError } from "./api.js";
import { h, append, clear, clock } from "./dom.js";
import { markdown } from "./markdown.js";
import { SummaryPieces, normalized, replaces } from "./insight_state.js";

export async function optional(path) {
  try {
    return await get(path);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
}

function triggerLine(result) {
  const what = { rolling: "updated during the meeting", ended: "the meeting's final summary",
                 idle: "final (the meeting went quiet)", requested: "asked for" }[result.trigger] || result.trigger;
  const fallback = result.fallback ? ` · the ${result.fallback.from} backend failed; the local one stood in` : "";
  return `${what} · ${result.run}${fallback}`;
}

function taskItem(item) {
  const who = item.assigned_to ?? item.assignee ?? "";
  return h("li", { class: "task", dataset: { actionItemId: item.action_item_id } },
    h("span", { class: "task-text" }, item.description),
    h("span", { class: "muted" }, ` · ${who || "unassigned"}${item.due_date ? ` · due ${item.due_date}` : ""}${item.status && item.status !== "pending" ? ` · ${item.status.replace("_", " ")}` : ""}`));
}

// The room's summary and task panels, fed by the live socket.
export class LiveInsights {
  constructor(meetingId) {
    this.meetingId = meetingId;
    this.shown = null;
    this.pieces = new SummaryPieces();
    this.summaryBody = h("div", { class: "summary-body" }, h("p", { class: "muted" }, "No summary yet."));
    this.summaryNote = h("p", { class: "muted summary-note" });
    this.taskList = h("ul", { class: "tasks", "aria-label": "Tasks" });
    this.summaryPanel = h("section", { class: "live-summary", id: "live-summary", "aria-live": "polite" },
      h("h2", {}, "Summary"), this.summaryNote, this.summaryBody);
    this.taskPanel = h("section", { class: "live-tasks", id: "live-tasks" }, h("h2", {}, "Tasks"), this.taskList);
    this.drawTasks([]);
  }

  // On load and on every (re)connect: the stored result and its tasks with human edits.
  async refresh() {
    const found = await optional(`/v1/meetings/${this.meetingId}/insights`).catch(() => null);
    if (found && this.result(found, false)) await this.storedTasks(this.shown);
  }

  // The tasks of the result shown with their human edits, once the store has that result (a message comes
  // before the store writer has written it); the machine's tasks stay until then.
  async storedTasks(result) {
    const items = await get(`/v1/meetings/${this.meetingId}/action-items?run=${encodeURIComponent(result.run)}`).catch(() => null);
    if (!items || this.shown !== result) return false;
    const machine = result.action_items || items; // a GET's result does not carry its items
    if (items.some((i) => i.revision !== result.revision) || (!items.length && machine.length)) return false;
    this.drawTasks(items);
    return true;
  }

  summary(piece) {
    if (this.shown && this.shown.enrichment_id === piece.enrichment_id) return; // its result is shown already
    this.pieces.add(piece);
    const text = this.pieces.text();
    if (text === null) return;
    this.summaryNote.textContent = "Writing the summary…";
    clear(this.summaryBody).append(markdown(text));
  }

  // A result (message or GET); returns whether it is now the one shown. The pieces of its enrichment are
  // done with either way (an older result's pieces, replayed on a reconnect, are not shown for longer).
  result(raw, withItems = true) {
    const result = normalized(raw);
    const streamed = this.pieces.enrichmentId === result.enrichment_id;
    if (streamed) this.pieces.reset(null);
    if (!replaces(this.shown, result)) {
      if (streamed) this.drawSummary();
      return false;
    }
    this.shown = result;
    this.drawSummary();
    if (withItems) {
      this.drawTasks(result.action_items || []);
      setTimeout(() => this.storedTasks(result), 1500);
    }
    return true;
  }

  drawSummary() {
    if (!this.shown) return;
    this.summaryNote.textContent = triggerLine(this.shown);
    clear(this.summaryBody).append(markdown(this.shown.summary.detailed || this.shown.summary.brief));
  }

  drawTasks(items) {
    clear(this.taskList);
    if (!items.length) this.taskList.append(h("li", { class: "muted" }, "No tasks yet."));
    else this.taskList.append(...items.map(taskItem));
  }
}

// --- the review page ---------------------------------------------------------------------------------------

function keywordList(keywords) {
  if (!keywords.length) return null;
  return h("section", { class: "card", id: "keywords" }, h("h2", {}, "Keywords"),
    h("p", { class: "keywords" }, keywords.map((k) => h("span", { class: "badge" }, k))));
}

function moodPanel(mood) {
  if (!mood || !mood.overall) return null;
  const score = (s) => `${s.label} (${s.score >= 0 ? "+" : ""}${Number(s.score).toFixed(2)})`;
  return h("section", { class: "card", id: "mood" }, h("h2", {}, "Mood"),
    h("p", {}, `Overall: ${score(mood.overall)}`),
    h("ul", { class: "plain" }, Object.entries(mood.speakers || {}).map(([name, s]) => h("li", {}, `${name}: ${score(s)}`))));
}

// Scrolls to a dialogue of the transcript on this page (the review page's boxes are #d-<dialogue_id>).
function seek(dialogueId) {
  const box = document.getElementById(`d-${dialogueId}`);
  if (!box) return;
  document.querySelectorAll(".box.highlight").forEach((b) => b.classList.remove("highlight"));
  box.classList.add("highlight");
  box.scrollIntoView({ block: "center" });
}

function agendaPanel(agenda) {
  if (!agenda.length) return null;
  return h("section", { class: "card", id: "agenda" }, h("h2", {}, "Agenda"),
    h("ol", { class: "agenda" }, agenda.map((topic) => {
      const first = (topic.dialogue_ids || [])[0];
      const when = `${clock(topic.start_ms)}–${clock(topic.end_ms)}`;
      const title = first ? h("a", { href: `#d=${first}`, on: { click: (e) => { e.preventDefault(); seek(first); } } }, topic.title)
                          : topic.title;
      return h("li", {}, h("span", { class: "clock muted" }, when), " ", title,
        topic.agenda_item && h("span", { class: "muted" }, ` · agenda: ${topic.agenda_item}`));
    })));
}

function metricsPanel(metrics) {
  if (!metrics || !metrics.speakers) return null;
  const minutes = (ms) => `${Math.round(ms / 1000)} s`;
  const rows = Object.entries(metrics.speakers).sort((a, b) => b[1].talk_ms - a[1].talk_ms);
  return h("section", { class: "card", id: "metrics" }, h("h2", {}, "Metrics"),
    h("p", { class: "muted" }, `${clock(metrics.duration_ms)} · ${Math.round(metrics.words_per_minute)} words/min · ${metrics.questions} questions · ${metrics.interruptions} interruptions · silence ${minutes(metrics.silence_ms)}`),
    h("table", { class: "metrics" },
      h("thead", {}, h("tr", {}, ["Speaker", "Talk time", "Share", "Words/min", "Turns", "Questions"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map(([name, s]) => h("tr", {},
        h("td", {}, name), h("td", {}, clock(s.talk_ms)),
        h("td", {}, h("meter", { min: 0, max: 1, value: s.share, "aria-label": `${name}'s share` }), ` ${Math.round(s.share * 100)} %`),
        h("td", {}, String(Math.round(s.words_per_minute))), h("td", {}, String(s.turns)), h("td", {}, String(s.questions)))))));
}

// The review page's summary panel and the panels of the rest of the result, and "Summarize now" for those
// who may write. onResult(result) is called when a new result arrived after asking (to redraw the tasks).
export function reviewInsights(meetingId, insights, { canWrite, onResult }) {
  const summarySlot = h("div", { class: "summary-body" });
  const note = h("p", { class: "muted summary-note" });
  const details = h("div", { class: "insights" });
  const status = h("p", { class: "muted", role: "status" });
  let shown = insights ? normalized(insights) : null;

  const draw = () => {
    clear(summarySlot);
    clear(details);
    if (!shown) {
      note.textContent = "";
      summarySlot.append(h("p", { class: "muted" }, "No summary yet."));
      return;
    }
    note.textContent = triggerLine(shown);
    summarySlot.append(markdown(shown.summary.detailed || shown.summary.brief));
    append(details, keywordList(shown.keywords || []), moodPanel(shown.mood), agendaPanel(shown.agenda || []),
      metricsPanel(shown.metrics));
  };

  const ask = h("button", { type: "button", class: "secondary", id: "summarize-now" }, "Summarize now");
  ask.addEventListener("click", async () => {
    ask.disabled = true;
    const before = shown;
    try {
      await post(`/v1/meetings/${meetingId}/enrichment`);
      status.textContent = "Asked: the summary comes in a moment.";
      const deadline = Date.now() + 180000;
      while (Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        const found = await optional(`/v1/meetings/${meetingId}/insights`).catch(() => null);
        if (found && (!before || found.produced_at_ms > before.produced_at_ms)) {
          shown = normalized(found);
          draw();
          status.textContent = "Summarized.";
          if (onResult) onResult(shown);
          return;
        }
      }
      status.textContent = "No new summary yet: it shows when you reload the page.";
    } catch (e) {
      status.textContent = `Summarize: ${explain(e)}`;
    } finally {
      ask.disabled = false;
    }
  });

  draw();
  const summary = h("section", { class: "card", id: "summary" }, h("h2", {}, "Summary"), note, summarySlot,
    canWrite && ask, status);
  return { summary, details };
}
