// Administration (milestone placeholder: sections follow).
import { shell } from "./shell.js";

await shell("admin");
