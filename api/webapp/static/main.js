// The app's entry: finds who is signed in, then draws the page the path names.
import { get, post, api, explain } from "./api.js";
import { h, clear, append, avatar } from "./dom.js";
import { meetingsPage, joinPage } from "./meetings.js";
import { roomPage } from "./room.js";
import { reviewPage } from "./review.js";
import { searchPage } from "./search.js";

const root = document.getElementById("app");

export function navigate(path) {
  history.pushState(null, "", path);
  route();
}

export async function currentUser() {
  try {
    return await get("/v1/me");
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

function showUser(me) {
  const slot = clear(document.getElementById("whoami"));
  if (!me) return;
  const signOut = h("button", { class: "link", type: "button", on: { click: async () => {
    await post("/v1/auth/logout").catch(() => {});
    location.assign("/signin");
  } } }, "Sign out");
  append(slot, [avatar(me.username, me.profile_pic_url), h("span", { class: "name" }, me.username), signOut]);
}

function authForm(kind) {
  const register = kind === "register";
  const error = h("p", { class: "error", role: "alert" });
  const fields = [
    h("label", {}, "Username", h("input", { name: "username", autocomplete: "username", required: true })),
    register && h("label", {}, "Email", h("input", { name: "email", type: "email", autocomplete: "email", required: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", required: true, minlength: register ? 8 : 1,
      autocomplete: register ? "new-password" : "current-password" })),
  ];
  const form = h("form", { class: "card narrow", id: `${kind}-form` },
    h("h1", {}, register ? "Create an account" : "Sign in"), fields, error,
    h("button", { type: "submit" }, register ? "Create account" : "Sign in"),
    h("p", { class: "muted" }, register ? "Have an account? " : "New here? ",
      h("a", { href: register ? "/signin" : "/register" }, register ? "Sign in" : "Create an account")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    error.textContent = "";
    try {
      if (register) await api("POST", "/v1/users", data);
      await api("POST", "/v1/auth/login", { username: data.username, password: data.password });
      const next = new URLSearchParams(location.search).get("next");
      location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/");
    } catch (e) {
      error.textContent = explain(e);
    }
  });
  return form;
}

export async function route() {
  const path = location.pathname;
  clear(root);
  let me = null;
  try {
    me = await currentUser();
  } catch (error) {
    append(root, h("p", { class: "error" }, `Palaver cannot be reached: ${explain(error)}`));
    return;
  }
  showUser(me);
  if (path === "/signin" || path === "/register") {
    append(root, authForm(path === "/signin" ? "signin" : "register"));
    return;
  }
  if (!me) {
    location.replace(`/signin?next=${encodeURIComponent(path + location.search + location.hash)}`);
    return;
  }
  const room = path.match(/^\/meetings\/([A-Za-z0-9._-]{1,64})$/);
  const review = path.match(/^\/meetings\/([A-Za-z0-9._-]{1,64})\/review$/);
  try {
    if (path === "/") await meetingsPage(root, me);
    else if (path === "/join") await joinPage(root, me);
    else if (path === "/search") await searchPage(root, me);
    else if (room) await roomPage(root, me, room[1]);
    else if (review) await reviewPage(root, me, review[1]);
    else append(root, h("p", { class: "error" }, "No such page."), h("a", { href: "/" }, "My meetings"));
  } catch (error) {
    append(root, h("p", { class: "error", role: "alert" }, explain(error)));
  }
}

window.addEventListener("popstate", route);
route();
