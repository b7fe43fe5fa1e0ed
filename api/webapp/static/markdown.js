// Markdown to DOM for summaries and tasks, sanitizing by construction: a small subset (headings,
// paragraphs, lists, emphasis, strong, inline code, http(s) links) is parsed and built with text nodes and
// a few allowed elements. No input is ever parsed as HTML, so a tag in the text shows as the tag's text.
import { h, safeUrl } from "./dom.js";

const INLINE = /(\*\*([^*]+)\*\*|\*([^*]+)\*|_([^_]+)_|`([^`]+)`|\[([^\]]+)\]\(([^)\s]+)\))/;

export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = rest.match(INLINE);
    if (!m) { out.push(rest); break; }
    if (m.index) out.push(rest.slice(0, m.index));
    if (m[2] !== undefined) out.push(h("strong", {}, inline(m[2])));
    else if (m[3] !== undefined || m[4] !== undefined) out.push(h("em", {}, inline(m[3] ?? m[4])));
    else if (m[5] !== undefined) out.push(h("code", {}, m[5]));
    else {
      const url = safeUrl(m[7]);
      out.push(url ? h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, m[6]) : m[0]);
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

export function markdown(source) {
  const root = h("div", { class: "markdown" });
  let list = null;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) root.append(h("p", {}, inline(paragraph.join(" "))));
    paragraph = [];
  };
  for (const raw of String(source || "").split("\n")) {
    const line = raw.trimEnd();
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const item = line.match(/^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/);
    if (heading) {
      flush(); list = null;
      root.append(h(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
    } else if (item) {
      flush();
      const kind = item[1] ? "ol" : "ul";
      if (!list || list.tagName.toLowerCase() !== kind) root.append((list = h(kind)));
      list.append(h("li", {}, inline(item[2])));
    } else if (!line.trim()) {
      flush(); list = null;
    } else {
      list = null;
      paragraph.push(line.trim());
    }
  }
  flush();
  return root;
}
