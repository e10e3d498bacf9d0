// The share dialog: make a public link to a file (expiry, an optional download limit and
// password), copy it, and see and revoke the file's links. The rules are in lib/shares.js.
import { describeError } from "../lib/errors.js";
import { SHARE_EXPIRY_PRESETS, shareRequest, shareSummary } from "../lib/shares.js";
import { $, button, dateFormat, element, openDialog } from "./ui.js";

let current = null; // {file, api, made}: what the open dialog is about, and the link it shows (made)

/** Draw the expiry presets as radio buttons once; the default one is chosen. */
function drawPresets() {
  const box = $("share-expiry");
  if (box.childElementCount) return;
  SHARE_EXPIRY_PRESETS.forEach((preset, i) => {
    const input = element("input");
    Object.assign(input, { type: "radio", name: "share-expiry", id: `share-expiry-${i}`, value: preset.seconds });
    const label = element("label", { text: preset.label });
    label.htmlFor = input.id;
    const choice = element("span", { className: "choice" });
    choice.append(input, label);
    box.append(choice);
  });
}

function resetForm() {
  $("share-form").reset();
  const preset = SHARE_EXPIRY_PRESETS.findIndex((p) => p.default);
  $(`share-expiry-${preset}`).checked = true;
  $("share-result").hidden = true;
  $("share-copied").textContent = "";
  $("share-error").textContent = "";
}

/** Open the share dialog on file from opener (focus returns there): a new link, and the file's links. */
export function showShare(file, opener, { api }) {
  current = { file, api };
  drawPresets();
  resetForm();
  $("share-title").textContent = `Share ${file.file_name}`;
  openDialog($("share-dialog"), opener);
  return drawLinks();
}

async function createLink(event) {
  event.preventDefault();
  const { file, api } = current;
  $("share-error").textContent = "";
  const { body, problem } = shareRequest({
    expiresIn: document.querySelector("input[name=share-expiry]:checked").value,
    maxDownloads: $("share-limit").value,
    password: $("share-password").value,
  });
  if (problem) {
    $("share-error").textContent = problem;
    $("share-limit").focus();
    return;
  }
  const asked = current; // the dialog may be closed (or opened on another file) while the link is made
  try {
    const share = await api.createShare(file.id, body);
    if (current !== asked) return; // nothing shows it now; it is listed (and revocable) when reopened
    current.made = share.id; // the server shows a link once: listings carry no url (it keeps only a hash)
    $("share-url").value = share.url;
    $("share-copied").textContent = "";
    $("share-result").hidden = false;
    $("share-password").value = "";
    $("share-url").focus();
    $("share-url").select();
    await drawLinks();
  } catch (error) {
    $("share-error").textContent = describeError(error);
  }
}

/** Copy the link: the clipboard when the browser lets the page write it, else select it for Ctrl+C. */
async function copyLink() {
  const field = $("share-url");
  const said = $("share-copied");
  said.textContent = ""; // a second "Copied" is announced again
  try {
    await navigator.clipboard.writeText(field.value);
    said.textContent = "Copied";
  } catch {
    field.focus();
    field.select();
    said.textContent = "The link is selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }
}

/** List the file's links, newest first, each with its expiry, downloads, password and a Revoke button. */
async function drawLinks() {
  const { file, api } = current;
  const list = $("share-links");
  try {
    const { items } = await api.listShares({ fileId: file.id });
    if (current?.file !== file) return;
    const live = items.filter((share) => !share.revoked && share.file_id === file.id);
    list.replaceChildren(...live.map(linkRow));
    $("share-links-empty").hidden = live.length > 0;
  } catch (error) {
    $("share-links-empty").hidden = true;
    list.replaceChildren(element("li", { className: "hint", text: `Links unavailable: ${describeError(error)}` }));
  }
}

function linkRow(share) {
  const words = shareSummary(share, { dateFormat });
  const item = element("li", { className: `share-link share-${words.state.replace(" ", "-")}` });
  const text = element("span", { className: "share-words" });
  const state = words.state === "active" ? "" : ` (${words.state})`;
  text.append(
    element("span", { text: `${words.expires}${state}` }),
    element("span", { text: words.downloads }),
    element("span", { text: words.password }),
  );
  const made = dateFormat.format(new Date(share.created_at));
  const revoke = button("Revoke", {
    label: `Revoke the link made ${made}, which ${words.expires.toLowerCase()}`,
    className: "danger",
    onClick: () => revokeLink(share, revoke),
  });
  item.append(text, revoke);
  return item;
}

async function revokeLink(share, control) {
  const { api } = current;
  control.disabled = true;
  try {
    await api.revokeShare(share.id);
    if (!current) return; // revoked; the dialog was closed meanwhile
    $("share-copied").textContent = "Link revoked: it no longer opens.";
    if (current.made === share.id) $("share-result").hidden = true;
    await drawLinks();
    $("share-links").querySelector("button")?.focus() ?? $("share-dialog-close").focus();
  } catch (error) {
    control.disabled = false;
    $("share-error").textContent = describeError(error);
  }
}

$("share-form").addEventListener("submit", createLink);
$("share-copy").addEventListener("click", copyLink);
$("share-dialog-close").addEventListener("click", () => $("share-dialog").close());
$("share-dialog").addEventListener("close", () => {
  current = null;
});
