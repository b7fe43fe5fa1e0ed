// Search across my meetings: GET /v1/search?q=, each hit a snippet linking to its moment on the review page.
import { get } from "./api.js";
import { h, append, clock } from "./dom.js";

export async function searchPage(root) {
  const q = new URLSearchParams(location.search).get("q") || "";
  const box = document.querySelector("#topsearch input");
  if (box) box.value = q;
  const form = h("form", { class: "card", action: "/search", method: "get", role: "search" },
    h("label", {}, "Search my meetings", h("input", { name: "q", type: "search", value: q, maxlength: 200, required: true })),
    h("button", { type: "submit" }, "Search"));
  append(root, h("h1", {}, "Search"), form);
  if (!q.trim()) return;
  const found = await get(`/v1/search?q=${encodeURIComponent(q)}`);
  const results = found.results || [];
  append(root, results.length
    ? h("ol", { class: "results" }, results.map((r) => h("li", { class: "result" },
        h("a", { href: r.url }, r.meeting_title || r.meeting_id),
        h("span", { class: "muted" }, ` · ${r.speaker_name || r.speaker_id} at ${clock(r.start_ms)}`),
        h("p", { class: "snippet" }, r.snippet))))
    : h("p", { class: "muted" }, `Nothing in your meetings matches “${q}”.`));
}
