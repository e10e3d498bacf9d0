// The preview dialog: an image, a video, a recording or a PDF shown from a short-lived inline
// URL, with the file's details and a Download button; other files get their details only.
import { downloadErrorText, fileEntry, inspectionText } from "../lib/inspection.js";
import { fileDetails, previewKind } from "../lib/preview.js";
import { $, dateFormat, element, openDialog, svgIcon } from "./ui.js";

let shown = null; // the file the dialog shows: an answer for another one is dropped

/** Build what shows a file of kind from url: <img>, <video>, <audio> or, for a PDF, an <iframe>. */
function mediaElement(kind, url, file) {
  if (kind === "image") {
    const image = element("img");
    image.alt = file.file_name;
    image.src = url;
    return image;
  }
  if (kind === "pdf") {
    const frame = element("iframe");
    frame.title = `PDF: ${file.file_name}`;
    frame.src = url;
    return frame;
  }
  const player = element(kind); // video or audio, with the browser's own controls
  player.controls = true;
  player.preload = "metadata";
  player.src = url;
  player.setAttribute("aria-label", file.file_name);
  return player;
}

function drawDetails(file) {
  const list = $("preview-details");
  list.replaceChildren();
  for (const [term, value] of fileDetails(file, { dateFormat })) {
    list.append(element("dt", { text: term }), element("dd", { text: value }));
  }
  const check = inspectionText(file);
  if (check) list.append(element("dt", { text: "Content check" }), element("dd", { text: check }));
}

/** Open the preview dialog on file from opener (focus returns there); download(file) saves it. */
export async function showPreview(file, opener, { api, download }) {
  const dialog = $("preview-dialog");
  const media = $("preview-media");
  shown = file;
  $("preview-title").textContent = file.file_name;
  drawDetails(file);
  $("preview-download").hidden = !fileEntry(file).canDownload;
  $("preview-download").onclick = () => download(file);
  dialog.addEventListener("close", () => media.replaceChildren(), { once: true }); // stops a video playing
  const kind = previewKind(file);
  media.dataset.kind = kind || "none";
  const icon = fileEntry(file).icon;
  media.replaceChildren(
    kind ? element("p", { className: "hint", text: "Loading the preview…" }) : svgIcon(icon.kind, icon.label),
  );
  if (!kind) media.append(element("p", { className: "hint", text: "No preview for this type of file." }));
  openDialog(dialog, opener);
  if (!kind) return;
  try {
    const { url } = await api.downloadUrl(file.id, { disposition: "inline" });
    if (shown === file && dialog.open) media.replaceChildren(mediaElement(kind, url, file));
  } catch (error) {
    if (shown === file && dialog.open) media.replaceChildren(element("p", { text: downloadErrorText(file, error) }));
  }
}
