// Builds DOM nodes from data. Text always goes in as text (textContent / text nodes), never as HTML: no
// user string can become markup, which is what keeps chat, names and transcripts from running script.

const SAFE_URL = /^(https?:\/\/|\/(?!\/))/i; // absolute http(s) or a path on this origin

export function safeUrl(url) {
  return typeof url === "string" && SAFE_URL.test(url) ? url : "";
}

// h("a", {class: "x", href: "/", on: {click: fn}, dataset: {id: "1"}}, "text", child, [more])
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "on") for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "href" || key === "src") {
      const url = safeUrl(value);
      if (url) el.setAttribute(key, url);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, ...children);
  return el;
}

// append(el, child, [children], ...): nested arrays are flattened; null, undefined and false are skipped.
export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function initials(name) {
  const parts = String(name || "?").replace(/[^\p{L}\p{N} ._-]/gu, "").split(/[ ._-]+/).filter(Boolean);
  return ((parts[0] || "?")[0] + (parts.length > 1 ? parts[parts.length - 1][0] : "")).toUpperCase();
}

// Where the Content-Security-Policy lets pictures come from: this origin and PALAVER_PICTURE_ORIGINS.
const PICTURE_ORIGINS = new Set([location.origin,
  ...(document.querySelector("meta[name=palaver-picture-origins]")?.content || "").split(" ").filter(Boolean)]);

function pictureAllowed(url) {
  try {
    return PICTURE_ORIGINS.has(new URL(url, location.href).origin);
  } catch {
    return false;
  }
}

// A picture when the user has one from an allowed origin and it loads, else their initials.
export function avatar(name, pictureUrl) {
  const badge = h("span", { class: "avatar", "aria-hidden": "true" }, initials(name));
  const url = pictureAllowed(pictureUrl) ? safeUrl(pictureUrl) : "";
  if (url) {
    const img = h("img", { src: url, alt: "", referrerpolicy: "no-referrer", loading: "lazy" });
    img.addEventListener("error", () => img.remove());
    badge.append(img);
  }
  return badge;
}

// Meeting clock: mm:ss, or h:mm:ss past the hour.
export function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
}

export function wallTime(epochMs) {
  return new Date(epochMs).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(epochMs) {
  return new Date(epochMs).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}
