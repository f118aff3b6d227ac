// The placeholder console page (replaced by the live console): the top bar and the device's name.
import { api } from "./api.js";
import { shell } from "./shell.js";

await shell("console");
const id = decodeURIComponent(location.pathname.split("/")[2] || "");
const device = await api("GET", "/v1/devices/" + encodeURIComponent(id));
document.getElementById("title").textContent = device.name;
document.title = device.name + " · remotehands";
