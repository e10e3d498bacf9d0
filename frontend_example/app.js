// The example page's DOM wiring. Upload logic lives in upload.js.
import { ApiError, S3DriveClient, formatBytes, uploadFiles } from "./upload.js";

const api = new S3DriveClient();
const $ = (id) => document.getElementById(id);

const authSection = $("auth-section");
const uploadSection = $("upload-section");
const authForm = $("auth-form");
const uploadForm = $("upload-form");
const fileInput = $("file-input");
const dropZone = $("drop-zone");
const fileList = $("file-list");
const uploadButton = $("upload-button");
const cancelButton = $("cancel-button");
const message = $("message");

let selected = [];
let controller = null;

const STATE_LABELS = {
  ready: "Ready",
  hashing: "Computing checksum…",
  signing: "Requesting upload URL…",
  uploading: "Uploading…",
  confirming: "Confirming…",
  complete: "Uploaded",
};

function say(text, { error = false } = {}) {
  message.textContent = text;
  message.classList.toggle("error", error);
}

function describe(error) {
  if (error instanceof ApiError) return `${error.message} (${error.code})`;
  return String(error?.message || error);
}

async function showSignedIn() {
  const me = await api.me();
  $("current-user").textContent = me.username;
  authSection.hidden = true;
  uploadSection.hidden = false;
  await refreshUsage();
}

function showSignedOut() {
  uploadSection.hidden = true;
  authSection.hidden = false;
  $("username").focus();
}

async function refreshUsage() {
  try {
    const usage = await api.usage();
    const reserved = usage.reserved_bytes ? `, ${formatBytes(usage.reserved_bytes)} reserved` : "";
    $("usage").textContent =
      `Using ${formatBytes(usage.used_bytes)} of ${formatBytes(usage.quota_bytes)}${reserved}` +
      ` · ${usage.file_count} file${usage.file_count === 1 ? "" : "s"}`;
  } catch (error) {
    $("usage").textContent = `Usage unavailable: ${describe(error)}`;
  }
}

authForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  await signIn(false);
});

$("register-button").addEventListener("click", () => signIn(true));

async function signIn(register) {
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) {
    say("Enter a username and a password.", { error: true });
    return;
  }
  try {
    if (register) await api.register(username, password);
    await api.login(username, password);
    $("password").value = "";
    say(register ? `Account ${username} created.` : "");
    await showSignedIn();
    fileInput.focus();
  } catch (error) {
    say(describe(error), { error: true });
  }
}

$("logout-button").addEventListener("click", async () => {
  await api.logout();
  setSelection([]);
  say("Signed out.");
  showSignedOut();
});

function setSelection(files) {
  selected = Array.from(files);
  fileList.replaceChildren(...selected.map((file, index) => fileRow(file, index)));
  uploadButton.disabled = selected.length === 0;
}

function fileRow(file, index) {
  const item = document.createElement("li");
  item.id = `file-${index}`;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = `${file.name} (${formatBytes(file.size)})`;
  const progress = document.createElement("progress");
  progress.max = file.size || 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Upload progress of ${file.name}`);
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = STATE_LABELS.ready;
  item.append(name, progress, state);
  return item;
}

function setRowState(index, state, detail) {
  const item = $(`file-${index}`);
  if (!item) return;
  item.className = state;
  const label = item.querySelector(".state");
  label.textContent =
    state === "failed" ? `Failed: ${detail?.message || "unknown error"} (${detail?.code || "error"})` : STATE_LABELS[state] || state;
  if (state === "complete") {
    const progress = item.querySelector("progress");
    progress.value = progress.max;
  }
}

function setRowProgress(index, loaded, total) {
  const progress = $(`file-${index}`)?.querySelector("progress");
  if (!progress) return;
  progress.max = total || 1;
  progress.value = loaded;
}

fileInput.addEventListener("change", () => setSelection(fileInput.files));

// Dragging over child elements fires leave/enter pairs; count them to know when we left.
let dragDepth = 0;
dropZone.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragover", (event) => event.preventDefault());
dropZone.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) dropZone.classList.remove("dragging");
});
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove("dragging");
  if (event.dataTransfer?.files?.length) setSelection(event.dataTransfer.files);
});

uploadForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!selected.length || controller) return;
  controller = new AbortController();
  uploadButton.disabled = true;
  cancelButton.disabled = false;
  fileInput.disabled = true;
  say(`Uploading ${selected.length} file${selected.length === 1 ? "" : "s"}…`);
  try {
    const results = await uploadFiles(api, selected, {
      signal: controller.signal,
      onState: setRowState,
      onProgress: setRowProgress,
    });
    const done = results.filter((result) => result.status === "complete").length;
    const failed = results.length - done;
    say(`${done} uploaded${failed ? `, ${failed} failed` : ""}.`, { error: failed > 0 });
  } catch (error) {
    say(describe(error), { error: true });
    if (error instanceof ApiError && error.status === 401) showSignedOut();
  } finally {
    controller = null;
    cancelButton.disabled = true;
    fileInput.disabled = false;
    fileInput.value = "";
    selected = [];
    uploadButton.disabled = true;
    if (api.signedIn) await refreshUsage();
  }
});

cancelButton.addEventListener("click", () => controller?.abort());

if (api.signedIn) {
  showSignedIn().catch(() => showSignedOut());
} else {
  showSignedOut();
}
