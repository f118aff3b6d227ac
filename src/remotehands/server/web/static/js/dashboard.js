// The fleet dashboard (milestone placeholder: the device list; live updates follow).
import { api } from "./api.js";
import { el, shell } from "./shell.js";

await shell("dashboard");
const { devices } = await api("GET", "/v1/devices");
const body = document.querySelector("#devices tbody");
for (const device of devices) {
  const link = el("a", { href: "/console/" + encodeURIComponent(device.id), text: device.name });
  body.append(el("tr", { "data-id": device.id },
    el("td", { class: "thumb" }),
    el("td", {}, el("span", { class: "status " + device.status, text: device.status })),
    el("td", { class: "name" }, link),
    el("td", { text: device.tags.join(", ") }),
    el("td", { text: device.device_type || "" }),
    el("td", {}),
    el("td", { text: device.agent_version || "" }),
    el("td", { text: device.last_seen || "" })));
}
