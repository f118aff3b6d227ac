// The bar at the top of every signed-in page: the pages, who is signed in, sign out.
// `shell(current)` fills <header id="topbar"> and answers me() (the signed-in user).

import { atLeast, me, signOut } from "./api.js";

const PAGES = [
  { href: "/", label: "Devices", key: "dashboard" },
  { href: "/admin", label: "Administration", key: "admin", role: "viewer" },
  { href: "/docs", label: "API", key: "docs" },
];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

/** Fill the top bar for page `current` ("dashboard", "admin", "console"); answers the user. */
export async function shell(current) {
  const bar = document.getElementById("topbar");
  const user = await me();
  bar.className = "topbar";
  bar.replaceChildren();
  bar.append(el("a", { class: "brand", href: "/", text: "remotehands" }));
  const nav = el("nav", { "aria-label": "Pages" });
  for (const page of PAGES) {
    if (page.role && !atLeast(user.role, page.role)) continue;
    const link = el("a", { href: page.href, text: page.label });
    if (page.key === current) link.setAttribute("aria-current", "page");
    nav.append(link);
  }
  bar.append(nav);
  bar.append(el("span", { class: "who", id: "who", text: `${user.username} (${user.role})` }));
  const out = el("button", { type: "button", id: "signout", text: "Sign out" });
  out.addEventListener("click", () => signOut());
  bar.append(out);
  return user;
}

export { el };
