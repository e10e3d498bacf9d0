// The two folder dialogs: a name (a new folder, a rename) and a folder picker (where selected
// files or a folder go). Each returns a promise of the answer, or null when cancelled.
import { describeError } from "../lib/errors.js";
import { folderName, joinPath, parentOf } from "../lib/folders.js";
import { $, button, element, openDialog, svgIcon } from "./ui.js";

/**
 * Ask for a name in #name-dialog: {title, label, hint, value, submit (the button's text), opener}.
 * Resolve with the trimmed name, or null when cancelled (Esc, Cancel).
 */
export function askName({ title, label, hint = "", value = "", submit, opener }) {
  const dialog = $("name-dialog");
  const input = $("name-input");
  $("name-title").textContent = title;
  $("name-label").textContent = label;
  $("name-hint").textContent = hint;
  $("name-submit").textContent = submit;
  input.value = value;
  return new Promise((resolve) => {
    let answer = null;
    const form = $("name-form");
    const onSubmit = (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) return input.focus();
      answer = name;
      dialog.close();
    };
    form.addEventListener("submit", onSubmit);
    $("name-cancel").onclick = () => dialog.close();
    dialog.addEventListener(
      "close",
      () => {
        form.removeEventListener("submit", onSubmit);
        resolve(answer);
      },
      { once: true },
    );
    openDialog(dialog, opener);
    input.select();
  });
}

/**
 * Let the person pick a folder in #folder-dialog, browsing from start: {title, api, start,
 * exclude (a folder that cannot be picked nor entered: the one being moved), opener}.
 * Resolve with the folder's path ("" for the top), or null when cancelled.
 */
export function pickFolder({ title, api, start = "", exclude = null, opener }) {
  const dialog = $("folder-dialog");
  $("folder-title").textContent = title;
  let at = start;
  let answer = null;
  const blocked = (path) => exclude != null && (path === exclude || path.startsWith(`${exclude}/`));
  if (blocked(at)) at = parentOf(exclude);

  const draw = async () => {
    $("folder-where").textContent = `Into: ${at ? at.split("/").join(" / ") : "All files (the top)"}`;
    $("folder-up").disabled = !at;
    $("folder-choose").disabled = blocked(at);
    const list = $("folder-choices");
    list.replaceChildren(element("li", { className: "hint", text: "Loading folders…" }));
    try {
      const { folders = [] } = await api.listFiles({ folder: at, limit: 1 });
      const open = folders.map((name) => joinPath(at, name)).filter((path) => !blocked(path));
      list.replaceChildren(...open.map((path) => folderChoice(path)));
      if (!open.length) list.replaceChildren(element("li", { className: "hint", text: "No folders in here." }));
    } catch (error) {
      list.replaceChildren(element("li", { className: "hint", text: describeError(error) }));
    }
  };
  const folderChoice = (path) => {
    const item = element("li");
    const go = button("", { label: `Go into ${folderName(path)}`, className: "folder" });
    go.append(svgIcon("folder"), element("span", { text: folderName(path) }));
    go.addEventListener("click", () => {
      at = path;
      draw().then(() => $("folder-choices").querySelector("button")?.focus() ?? $("folder-choose").focus());
    });
    item.append(go);
    return item;
  };

  return new Promise((resolve) => {
    $("folder-up").onclick = () => {
      at = parentOf(at);
      draw();
    };
    $("folder-choose").onclick = () => {
      answer = at;
      dialog.close();
    };
    $("folder-cancel").onclick = () => dialog.close();
    dialog.addEventListener("close", () => resolve(answer), { once: true });
    openDialog(dialog, opener);
    draw();
  });
}
