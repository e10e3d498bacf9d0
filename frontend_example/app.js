// The example page's DOM wiring: signing in, the upload list, and the drive (folders, the file
// list or grid, selection, previews, share links). Upload logic and wording live in lib/ (no DOM
// there), shared with <S3Uploader>; the dialogs and DOM helpers are in page/.
import { S3DriveClient, saveFromUrl } from "./lib/api.js";
import { droppedItems, pickedItems } from "./lib/drop.js";
import { ApiError, describeError } from "./lib/errors.js";
import { TransferMeter, formatBytes, plural, rateText, stateText } from "./lib/format.js";
import { folderName, joinPath, parentOf } from "./lib/folders.js";
import { downloadErrorText, fileEntry, inspectionText } from "./lib/inspection.js";
import { acceptFor, hasProfiles, limitsText, profileLabel, profileLimits, profileNames } from "./lib/limits.js";
import { partLength } from "./lib/multipart.js";
import { previewKind } from "./lib/preview.js";
import { ResumeStore, mayResume } from "./lib/resume-store.js";
import { canShare } from "./lib/shares.js";
import { Uploader, countResults, folderOf } from "./lib/uploader.js";
import { askName, pickFolder } from "./page/folder-dialogs.js";
import { showPreview } from "./page/preview-dialog.js";
import { showShare } from "./page/share-dialog.js";
import { $, button, clearError, dateFormat, element, say, sayError, svgIcon, titled } from "./page/ui.js";

const api = new S3DriveClient();
const resumeStore = new ResumeStore();
const PAGE_SIZE = 25;
const RECHECK_MS = 5000; // how often the list looks again while a file's content is being checked
const VIEW_KEY = "s3drive.view"; // "list" or "grid", remembered across visits
const PROFILE_KEY = "s3drive.profile"; // the upload profile chosen last, remembered across visits

// -- signing in ------------------------------------------------------------------------------

api.onSignedOut = () => {
  if (!$("app").hidden) {
    showSignedOut();
    sayError("Your session has ended. Sign in again.");
  }
};

async function showSignedIn() {
  const me = await api.me();
  $("current-user").textContent = me.username;
  $("auth-section").hidden = true;
  $("app").hidden = false;
  $("account").hidden = false;
  await Promise.all([refreshUsage(), refreshFiles(), showResumable()]);
}

function showSignedOut() {
  $("app").hidden = true;
  $("account").hidden = true;
  $("auth-section").hidden = false;
  $("username").focus();
}

async function signIn(register) {
  clearError();
  const username = $("username").value.trim();
  const password = $("password").value;
  const problem = credentialsProblem(username, password);
  if (problem) {
    sayError(problem);
    return;
  }
  try {
    if (register) await api.register(username, password);
    await api.login(username, password);
    $("password").value = "";
    await showSignedIn();
    say(register ? `Account ${username} created; you are signed in.` : `Signed in as ${username}.`);
    $("file-input").focus();
  } catch (error) {
    sayError(error);
  }
}

function credentialsProblem(username, password) {
  if (!/^[A-Za-z0-9_.-]{3,64}$/.test(username)) {
    return "The username needs 3 to 64 letters, digits, dots, dashes or underscores.";
  }
  if (password.length < 8) return "The password needs at least 8 characters.";
  return null;
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(false);
});
$("register-button").addEventListener("click", () => signIn(true));

$("logout-button").addEventListener("click", async () => {
  controller?.abort();
  clearTimeout(recheckTimer);
  await api.logout();
  lastUsage = null;
  setQueue([]);
  clearError();
  showSignedOut();
  say("Signed out.");
});

// -- usage -----------------------------------------------------------------------------------

async function refreshUsage() {
  try {
    const usage = await api.usage();
    lastUsage = usage;
    showLimits();
    const bar = $("usage-bar");
    bar.max = usage.quota_bytes || 1;
    bar.value = Math.min(usage.used_bytes + usage.reserved_bytes, bar.max);
    const reserved = usage.reserved_bytes ? ` (+ ${formatBytes(usage.reserved_bytes)} reserved by uploads)` : "";
    const percent = usage.quota_bytes ? Math.round((100 * usage.used_bytes) / usage.quota_bytes) : 0;
    $("usage-text").textContent =
      `${formatBytes(usage.used_bytes)} of ${formatBytes(usage.quota_bytes)} used (${percent}%)${reserved}` +
      ` · ${plural(usage.file_count, "file")}`;
  } catch (error) {
    $("usage-text").textContent = `Usage unavailable: ${describeError(error)}`;
  }
}

// -- what the server accepts (GET /api/files/limits) ----------------------------------------

let limits = null; // the server's limits once known; the Uploader asks for them itself otherwise
let lastUsage = null; // the storage used, as last shown

/**
 * Read the server's limits: the profile selector (when the server has profiles), the types the
 * file picker offers and the sizes its hint says, both the chosen profile's.
 */
async function loadLimits() {
  try {
    limits = await api.limits();
  } catch {
    return; // no filter, no hint: the Uploader asks again, and the server checks every file anyway
  }
  showProfiles();
  showLimits();
}

/** Fill the "Upload as" selector with the server's profiles, the one chosen last selected; hide it without any. */
function showProfiles() {
  const select = $("profile-select");
  const names = profileNames(limits);
  $("profile-field").hidden = !hasProfiles(limits);
  select.replaceChildren(...names.map((name) => new Option(profileLabel(name, limits), name)));
  const saved = savedProfile();
  select.value = names.includes(saved) ? saved : names[0];
}

/** Return the chosen profile's name, or null when the server offers no choice. */
function chosenProfile() {
  return limits && hasProfiles(limits) ? $("profile-select").value || null : null;
}

/** The picker's filter and hint follow the chosen profile: its types, its sizes. */
function showLimits() {
  const effective = limits && profileLimits(limits, chosenProfile());
  if (effective) {
    const accept = acceptFor(effective.allowed_content_types);
    if (accept) $("file-input").accept = accept;
    else $("file-input").removeAttribute("accept");
  }
  $("picker-hint").textContent = limitsText(effective, lastUsage);
}

/** Return the profile chosen on an earlier visit, or null (none, or storage disabled). */
function savedProfile() {
  try {
    return localStorage.getItem(PROFILE_KEY);
  } catch {
    return null;
  }
}

$("profile-select").addEventListener("change", () => {
  try {
    localStorage.setItem(PROFILE_KEY, $("profile-select").value);
  } catch {
    // Storage disabled: the choice lasts until the page is left.
  }
  showLimits();
});

// -- choosing files --------------------------------------------------------------------------

let queue = []; // [{file, relativePath, row, meter, status, uploadIndex}]
let controller = null;
let uploader = null; // the Uploader while uploads run: it pauses and resumes them
const FINAL_STATES = ["complete", "failed", "cancelled"];

function setQueue(items) {
  queue = items.map((item) => ({ ...item, meter: new TransferMeter() }));
  $("queue").replaceChildren(...queue.map((item, index) => queueRow(item, index)));
  $("overall").hidden = true;
  updateButtons();
}

function updateButtons() {
  const busy = Boolean(controller);
  for (const item of queue) item.row?.querySelector(".queue-remove")?.toggleAttribute("hidden", busy);
  $("upload-button").disabled = busy || !queue.some((item) => item.status !== "complete");
  $("cancel-button").disabled = !busy;
  const running = busy ? queue.filter((item) => item.uploadIndex != null && !FINAL_STATES.includes(item.status)) : [];
  $("pause-all-button").disabled = !running.some((item) => item.status !== "paused");
  $("resume-all-button").disabled = !running.some((item) => item.status === "paused");
  $("clear-button").disabled = busy || queue.length === 0;
  $("file-input").disabled = busy;
  $("folder-input").disabled = busy;
  $("profile-select").disabled = busy; // a run's files are all of one profile
}

function displayName(item) {
  return item.relativePath || item.file.name;
}

function queueRow(item, index) {
  const name = displayName(item);
  const row = element("li", { className: "queue-item state-ready" });
  row.id = `upload-${index}`;
  const head = element("div", { className: "queue-head" });
  head.append(
    titled(element("span", { className: "queue-name", text: name }), name),
    element("span", { className: "queue-size", text: formatBytes(item.file.size) }),
    button("Pause", {
      label: `Pause upload of ${name}`,
      className: "queue-pause small",
      onClick: () => uploader?.pause(item.uploadIndex),
    }),
    button("Resume", {
      label: `Resume upload of ${name}`,
      className: "queue-resume small",
      onClick: () => uploader?.resume(item.uploadIndex),
    }),
    button("Cancel", {
      label: `Cancel upload of ${name}`,
      className: "queue-cancel small",
      onClick: () => item.controller?.abort(),
    }),
    button("Remove", {
      label: `Remove ${name} from the list`,
      className: "queue-remove small",
      onClick: () => removeFromQueue(item),
    }),
  );
  const progress = element("progress");
  progress.max = item.file.size || 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Upload progress of ${name}`);
  const status = element("div", { className: "queue-status" });
  const saved = resumeStore.get(item.file);
  const resumable = Boolean(saved) && mayResume(saved, api.user);
  status.append(
    element("span", { className: "queue-state", text: stateText("ready", null, { resumable }) }),
    element("span", { className: "rate" }),
  );
  for (const control of head.querySelectorAll(".queue-cancel, .queue-pause, .queue-resume")) control.hidden = true;
  row.append(head, progress, status);
  item.row = row;
  return row;
}

/** Take a file off the list before it is sent (the buttons are hidden while uploads run). */
function removeFromQueue(item) {
  if (controller) return;
  const at = queue.indexOf(item);
  if (at < 0) return;
  queue.splice(at, 1);
  item.row.remove();
  say(`Removed ${displayName(item)} from the list.`);
  // Keep the keyboard where it was: the next row's Remove button, or the file picker.
  const next = queue[at] ?? queue[at - 1];
  (next?.row.querySelector(".queue-remove") ?? $("file-input")).focus();
  updateButtons();
}

function setRowState(index, state, detail) {
  const item = queue[index];
  if (!item?.row) return;
  item.status = state;
  const row = item.row;
  row.className = `queue-item state-${state}`;
  const text = stateText(state, detail);
  row.querySelector(".queue-state").textContent = text;
  const active = !FINAL_STATES.includes(state);
  const paused = state === "paused";
  row.querySelector(".queue-cancel").hidden = !active || !controller;
  moveFocusOff(row, paused ? ".queue-pause" : ".queue-resume", paused ? ".queue-resume" : ".queue-pause");
  row.querySelector(".queue-pause").hidden = !active || paused || !controller;
  row.querySelector(".queue-resume").hidden = !paused || !controller;
  if (!active) row.querySelector(".rate").textContent = "";
  if (state === "complete") {
    const progress = row.querySelector("progress");
    progress.value = progress.max;
  }
  if (state === "failed") say(`${displayName(item)}: ${text}`);
  if (paused) say(`Paused ${displayName(item)}.`);
  updateButtons();
}

/** Keep the keyboard on a row when the button it is on hides (Pause becomes Resume, and back). */
function moveFocusOff(row, hiding, showing) {
  if (document.activeElement !== row.querySelector(hiding)) return;
  const target = row.querySelector(showing);
  target.hidden = false;
  target.focus();
}

// Progress events come faster than the screen refreshes: draw once per frame.
let drawPending = false;
const dirtyRows = new Set();
let overallState = null;

function setRowProgress(index, loaded, total) {
  const item = queue[index];
  if (!item) return;
  item.progress = item.meter.update(loaded, total);
  dirtyRows.add(index);
  scheduleDraw();
}

function setOverallProgress(loaded, total) {
  overallState = overallMeter.update(loaded, total);
  scheduleDraw();
}

function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    for (const index of dirtyRows) drawRow(queue[index]);
    dirtyRows.clear();
    if (overallState) drawOverall(overallState);
  });
}


function drawRow(item) {
  if (!item?.row || !item.progress) return;
  const progress = item.row.querySelector("progress");
  progress.max = item.progress.total || 1;
  progress.value = item.progress.loaded;
  if (!FINAL_STATES.includes(item.status)) {
    item.row.querySelector(".rate").textContent = rateText(item.progress);
  }
}

function drawOverall(state) {
  $("overall").hidden = false;
  $("overall-bar").max = state.total || 1;
  $("overall-bar").value = state.loaded;
  $("overall-text").textContent = rateText(state);
}

$("file-input").addEventListener("change", (event) => pick(pickedItems(event.target.files)));
$("folder-input").addEventListener("change", (event) => pick(pickedItems(event.target.files)));

function pick(items) {
  if (controller) {
    sayError("Wait for the current uploads to finish, or cancel them, before adding files.");
    return;
  }
  clearError();
  setQueue(items);
  if (items.length) say(`${plural(items.length, "file")} ready to upload. Press Upload to start.`);
}

// Dragging over child elements fires leave/enter pairs; count them to know when we left.
let dragDepth = 0;
const dropZone = $("drop-zone");
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
dropZone.addEventListener("drop", async (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove("dragging");
  try {
    pick(await droppedItems(event.dataTransfer));
  } catch (error) {
    sayError(`Cannot read what was dropped: ${error.message}`);
  }
});


// -- uploading -------------------------------------------------------------------------------

let overallMeter = new TransferMeter();

function boundedNumber(id, fallback) {
  const value = Number.parseInt($(id).value, 10);
  return Number.isFinite(value) ? Math.min(16, Math.max(1, value)) : fallback;
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const todo = queue.map((item, index) => ({ item, index })).filter(({ item }) => item.status !== "complete");
  if (!todo.length || controller) return;
  clearError();
  controller = new AbortController();
  overallMeter = new TransferMeter();
  const base = $("target-folder").value.trim();
  todo.forEach(({ item }, i) => {
    item.controller = new AbortController();
    item.uploadIndex = i; // the file's position in this run, for pause and resume
  });
  updateButtons();
  say(`Uploading ${plural(todo.length, "file")}…`);
  try {
    uploader = new Uploader(api, {
      signal: controller.signal,
      fileConcurrency: boundedNumber("file-concurrency", 3),
      partConcurrency: boundedNumber("part-concurrency", 4),
      store: resumeStore,
      limits,
      profile: chosenProfile(),
      onState: (i, state, detail) => setRowState(todo[i].index, state, detail),
      onProgress: (i, loaded, total) => setRowProgress(todo[i].index, loaded, total),
      onTotalProgress: setOverallProgress,
    });
    const items = todo.map(({ item }) => ({
      file: item.file,
      folder: folderOf(item.relativePath, base),
      signal: item.controller.signal,
    }));
    announceResults(await uploader.upload(items));
  } catch (error) {
    sayError(error);
  } finally {
    controller = null;
    uploader = null;
    for (const item of queue) {
      item.controller = null;
      item.uploadIndex = null;
      for (const control of item.row?.querySelectorAll(".queue-cancel, .queue-pause, .queue-resume") ?? []) {
        control.hidden = true;
      }
    }
    $("file-input").value = "";
    $("folder-input").value = "";
    updateButtons();
    if (api.signedIn) await Promise.all([refreshUsage(), refreshFiles(), showResumable()]);
  }
});

function announceResults(results) {
  const { complete, failed, cancelled, resumedBytes } = countResults(results);
  const parts = [`${plural(complete, "file")} uploaded`];
  if (resumedBytes) parts.push(`${formatBytes(resumedBytes)} carried over from an interrupted upload`);
  if (failed) parts.push(`${failed} failed`);
  if (cancelled) parts.push(`${cancelled} cancelled`);
  const text = `${parts.join(", ")}.`;
  if (failed) sayError(`${text} See the list for what went wrong.`);
  else say(text);
}

$("cancel-button").addEventListener("click", () => {
  controller?.abort();
  say("Cancelling…");
});

$("pause-all-button").addEventListener("click", () => {
  const count = uploader?.pauseAll() ?? 0;
  if (count) say(`Paused ${plural(count, "upload")}. Parts already stored stay; Resume all goes on from there.`);
  $("resume-all-button").focus();
});

$("resume-all-button").addEventListener("click", () => {
  const count = uploader?.resumeAll() ?? 0;
  if (count) say(`Resuming ${plural(count, "upload")}…`);
  $("pause-all-button").focus();
});

$("clear-button").addEventListener("click", () => {
  setQueue([]);
  $("file-input").focus();
});

// -- interrupted uploads (resume after a reload) ---------------------------------------------

async function showResumable() {
  // Only this account's uploads: another one's ids would answer not_found.
  const saved = resumeStore.list().filter((state) => mayResume(state, api.user));
  const rows = [];
  for (const state of saved) {
    let status;
    try {
      status = await api.multipartStatus(state.id);
    } catch (error) {
      if (error instanceof ApiError && ["not_found", "invalid_state"].includes(error.code)) {
        resumeStore.deleteKey(state.key); // Gone, or another account's upload.
        continue;
      }
      status = null;
    }
    if (status && status.status !== "uploading") {
      resumeStore.deleteKey(state.key);
      continue;
    }
    rows.push(resumeRow(state, status));
  }
  $("resume-list").replaceChildren(...rows);
  $("resume-notice").hidden = rows.length === 0;
}

function savedBytes({ parts, file_size: size, part_size: partSize }) {
  if (!parts || !partSize) return null;
  return parts.reduce((sum, [number]) => sum + partLength(size, partSize, number), 0);
}

function resumeRow(state, status) {
  const row = element("li");
  // The server reads S3's parts; without its answer, the parts saved as they finished say about as much.
  const bytes = status ? status.bytes_uploaded : savedBytes(state);
  const done = bytes != null ? `${formatBytes(bytes)} of ` : "";
  const where = state.folder ? ` in ${state.folder}` : "";
  row.append(
    element("span", { text: `${state.file_name}${where}: ${done}${formatBytes(state.file_size)} uploaded. ` }),
    button("Discard", {
      label: `Discard the interrupted upload of ${state.file_name}`,
      className: "small",
      onClick: async () => {
        try {
          await api.abortMultipart(state.id);
        } catch (error) {
          if (!(error instanceof ApiError && ["not_found", "invalid_state"].includes(error.code))) {
            sayError(error);
            return;
          }
        }
        resumeStore.deleteKey(state.key);
        say(`Discarded the interrupted upload of ${state.file_name}.`);
        await Promise.all([showResumable(), refreshUsage()]);
        $("file-input").focus();
      },
    }),
  );
  return row;
}

// -- the file list -----------------------------------------------------------------------------

const browse = { folder: "", q: "", status: "", cursors: [null], page: 0, nextCursor: null };
let recheckTimer = null;
let checking = new Map(); // id → file, for the listed files whose content is being checked

async function refreshFiles() {
  const searching = Boolean(browse.q);
  clearTimeout(recheckTimer);
  try {
    const answer = await api.listFiles({
      folder: searching ? undefined : browse.folder,
      q: browse.q || undefined,
      status: browse.status || undefined,
      limit: PAGE_SIZE,
      cursor: browse.cursors[browse.page] || undefined,
    });
    browse.nextCursor = answer.next_cursor;
    drawBreadcrumbs();
    drawFolders(searching ? [] : answer.folders || []);
    drawFiles(answer.items);
    drawPager(answer.items.length);
    checking = new Map(answer.items.filter((file) => fileEntry(file).state === "pending").map((f) => [f.id, f]));
    if (checking.size) scheduleRecheck();
  } catch (error) {
    sayError(error);
  }
}

// Content checks run in the background on the server: look again until they are done, but
// never while a name is being edited (redrawing the list would drop the edit).
function scheduleRecheck() {
  clearTimeout(recheckTimer);
  recheckTimer = setTimeout(() => {
    if ($("app").hidden) return;
    if (document.querySelector("form.rename")) scheduleRecheck();
    else recheck();
  }, RECHECK_MS);
}

/** Draw the list again, keeping the focus on the same button, and say which files were refused. */
async function recheck() {
  const waiting = checking;
  const focused = document.activeElement;
  const label = $("files-body").contains(focused) ? focused.getAttribute("aria-label") : null;
  await refreshFiles();
  if (label) document.querySelector(`#files-body button[aria-label="${CSS.escape(label)}"]`)?.focus();
  // A refused file leaves the list of complete files: say why it went.
  const shown = new Set(Array.from($("files-body").children, (row) => row.dataset.id));
  const refused = [];
  for (const id of waiting.keys()) {
    if (shown.has(id)) continue;
    try {
      const file = await api.getFile(id);
      if (fileEntry(file).state === "rejected") refused.push(`${file.file_name}: ${inspectionText(file)}`);
    } catch {
      // deleted meanwhile: nothing to say
    }
  }
  if (refused.length) {
    sayError(`${refused.join(" ")} (Show “Files the content check refused” to see them.)`);
    await refreshUsage();
  }
}

function go({ folder = browse.folder, q = browse.q, status = browse.status } = {}) {
  Object.assign(browse, { folder, q, status, cursors: [null], page: 0, nextCursor: null });
  $("search-clear").hidden = !q;
  return refreshFiles();
}

function drawBreadcrumbs() {
  const list = $("breadcrumbs").querySelector("ol");
  const crumbs = [{ name: "All files", folder: "" }];
  if (browse.q) {
    crumbs.push({ name: `Search: “${browse.q}”`, folder: null });
  } else {
    const segments = browse.folder ? browse.folder.split("/") : [];
    segments.forEach((name, i) => crumbs.push({ name, folder: segments.slice(0, i + 1).join("/") }));
  }
  list.replaceChildren(
    ...crumbs.map((crumb, i) => {
      const item = element("li");
      if (i === crumbs.length - 1) {
        item.append(element("span", { text: crumb.name }));
        item.setAttribute("aria-current", "location");
      } else {
        item.append(button(crumb.name, { className: "link", onClick: () => go({ folder: crumb.folder, q: "" }) }));
      }
      return item;
    }),
  );
}

function drawFolders(folders) {
  $("folder-list").replaceChildren(
    ...folders.map((name) => {
      const item = element("li");
      const path = joinPath(browse.folder, name);
      const open = button("", {
        label: `Open folder ${name}`,
        className: "folder",
        onClick: async () => {
          await go({ folder: path, q: "" });
          $("files-heading").focus();
        },
      });
      open.append(svgIcon("folder"), titled(element("span", { className: "folder-name", text: name }), name));
      item.append(open);
      return item;
    }),
  );
  drawFolderActions();
}

/** Show the actions on the open folder (none at the top, nor in a search). */
function drawFolderActions() {
  const inFolder = Boolean(browse.folder) && !browse.q;
  for (const id of ["rename-folder-button", "move-folder-button", "delete-folder-button"]) $(id).hidden = !inFolder;
  $("new-folder-button").hidden = Boolean(browse.q);
  if (inFolder) {
    const name = folderName(browse.folder);
    $("rename-folder-button").setAttribute("aria-label", `Rename folder ${name}`);
    $("move-folder-button").setAttribute("aria-label", `Move folder ${name}`);
    $("delete-folder-button").setAttribute("aria-label", `Delete folder ${name}`);
  }
}

let listed = []; // the files on this page of the list, as last drawn

function drawFiles(items) {
  listed = items;
  const ids = new Set(items.map((file) => file.id));
  for (const id of selected) if (!ids.has(id)) selected.delete(id); // only what is on screen stays selected
  $("files-body").replaceChildren(...items.map(fileRow));
  $("files-empty").hidden = items.length > 0;
  $("files-table").hidden = items.length === 0;
  $("selection-bar").hidden = items.length === 0;
  $("files-empty").textContent = browse.q
    ? "No files match this search."
    : browse.status === "rejected"
      ? "No refused files here."
      : "No files here yet.";
  $("files-caption").textContent = browse.q
    ? `Files matching ${browse.q}`
    : `Files in ${browse.folder || "the top folder"}`;
  drawSelection();
}

function fileRow(file) {
  const entry = fileEntry(file);
  const row = element("tr");
  row.dataset.id = file.id;
  row.classList.toggle("selected", selected.has(file.id));
  const thumbCell = element("td", { className: "thumb" });
  thumbCell.append(entry.thumbnail ? thumbnail(entry.thumbnail) : svgIcon(entry.icon.kind, entry.icon.label));
  row.append(selectCell(file, row), thumbCell, nameCell(file, entry));
  row.append(
    element("td", { className: "num", text: formatBytes(file.size) }),
    element("td", { className: "date", text: file.created_at ? dateFormat.format(new Date(file.created_at)) : "" }),
    actionsCell(file, entry, row),
  );
  return row;
}

function selectCell(file, row) {
  const cell = element("td", { className: "select" });
  const box = element("input");
  box.type = "checkbox";
  box.checked = selected.has(file.id);
  box.setAttribute("aria-label", `Select ${file.file_name}`);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(file.id);
    else selected.delete(file.id);
    row.classList.toggle("selected", box.checked);
    drawSelection();
  });
  cell.append(box);
  return cell;
}

/** The name opens the preview (or the details, for a type without one). */
function nameCell(file, entry) {
  const cell = element("td", { className: "name" });
  const open = button("", {
    label: `${previewKind(file) ? "Preview" : "Details of"} ${file.file_name}`,
    className: "name-button",
    onClick: (event) => showPreview(file, event.currentTarget, { api, download }),
  });
  open.append(titled(element("span", { className: "file-name", text: file.file_name }), file.file_name));
  cell.append(open);
  if (browse.q && file.folder) cell.append(element("span", { className: "file-folder", text: ` in ${file.folder}` }));
  if (file.title) cell.append(element("span", { className: "file-title", text: file.title }));
  if (entry.text) cell.append(element("span", { className: `file-check check-${entry.state}`, text: entry.text }));
  return cell;
}

function actionsCell(file, entry, row) {
  const cell = element("td", { className: "actions" });
  const name = file.file_name;
  if (canShare(file)) {
    cell.append(
      button("Share", {
        label: `Share ${name}`,
        onClick: (event) => showShare(file, event.currentTarget, { api }),
      }),
    );
  }
  if (entry.canDownload) {
    cell.append(
      button("Download", { label: `Download ${name}`, onClick: () => download(file) }),
      button("Rename", { label: `Rename ${name}`, onClick: () => startRename(row, file) }),
    );
  }
  cell.append(button("Delete", { label: `Delete ${name}`, className: "danger", onClick: () => remove(file) }));
  return cell;
}

function thumbnail({ src, alt, width, height, loading, decoding }) {
  const image = element("img");
  Object.assign(image, { alt, width, height, loading, decoding });
  image.src = src;
  return image;
}

// -- selecting many files -------------------------------------------------------------------------

const selected = new Set(); // ids of the selected files on this page

function drawSelection() {
  const count = selected.size;
  const all = $("select-all");
  all.checked = count > 0 && count === listed.length;
  all.indeterminate = count > 0 && count < listed.length;
  $("selection-count").textContent = count ? `${plural(count, "file")} selected` : "No files selected";
  $("move-selected").disabled = count === 0;
  $("delete-selected").disabled = count === 0;
}

$("select-all").addEventListener("change", (event) => {
  selected.clear();
  if (event.target.checked) for (const file of listed) selected.add(file.id);
  for (const row of $("files-body").children) {
    row.classList.toggle("selected", event.target.checked);
    row.querySelector("td.select input").checked = event.target.checked;
  }
  drawSelection();
});

$("delete-selected").addEventListener("click", async () => {
  const ids = [...selected];
  if (!ids.length || !window.confirm(`Delete ${plural(ids.length, "file")}? This cannot be undone.`)) return;
  clearError();
  try {
    const { deleted, failed } = await api.deleteFiles(ids);
    selected.clear();
    await Promise.all([refreshFiles(), refreshUsage()]);
    reportBulk(`Deleted ${plural(deleted.length, "file")}.`, failed);
    $("files-heading").focus();
  } catch (error) {
    sayError(error);
  }
});

$("move-selected").addEventListener("click", async (event) => {
  const ids = [...selected];
  const opener = event.currentTarget;
  const title = `Move ${plural(ids.length, "file")} to…`;
  const folder = await pickFolder({ title, api, start: browse.q ? "" : browse.folder, opener });
  if (folder == null) return;
  clearError();
  try {
    const { moved, failed } = await api.moveFiles(ids, folder);
    selected.clear();
    await refreshFiles();
    reportBulk(`Moved ${plural(moved.length, "file")} to ${folder || "the top folder"}.`, failed);
  } catch (error) {
    sayError(error);
  }
});

/** Say what a bulk action did, and name each file it could not do with its reason. */
function reportBulk(text, failed = []) {
  say(text);
  if (!failed.length) return;
  const names = new Map(listed.map((file) => [file.id, file.file_name]));
  const reasons = failed.map(({ id, error }) => `${names.get(id) || id}: ${describeError(error)}`);
  sayError(`${plural(failed.length, "file")} could not be changed. ${reasons.join(" ")}`);
}

// -- folders ------------------------------------------------------------------------------------

$("new-folder-button").addEventListener("click", async (event) => {
  const where = browse.folder || "the top folder";
  const name = await askName({
    title: "New folder",
    label: "Folder name",
    hint: `Made in ${where}; a slash makes folders inside folders (trips/2026).`,
    submit: "Create folder",
    opener: event.currentTarget,
  });
  if (!name) return;
  const path = joinPath(browse.folder, name);
  clearError();
  try {
    await api.createFolder(path);
    await refreshFiles();
    say(`Made the folder ${path}.`);
  } catch (error) {
    sayError(error);
  }
});

$("rename-folder-button").addEventListener("click", async (event) => {
  const old = browse.folder;
  const name = await askName({
    title: `Rename folder ${folderName(old)}`,
    label: "New name",
    hint: "Its files and folders go with it.",
    value: folderName(old),
    submit: "Rename",
    opener: event.currentTarget,
  });
  if (!name || name === folderName(old)) return;
  await moveFolder(old, joinPath(parentOf(old), name), `Renamed ${old} to`);
});

$("move-folder-button").addEventListener("click", async (event) => {
  const old = browse.folder;
  const title = `Move folder ${folderName(old)} into…`;
  const target = await pickFolder({ title, api, start: parentOf(old), exclude: old, opener: event.currentTarget });
  if (target == null || target === parentOf(old)) return;
  await moveFolder(old, joinPath(target, folderName(old)), `Moved ${old} to`);
});

/** Rename or move the open folder to path, then open it there. */
async function moveFolder(old, path, done) {
  clearError();
  try {
    const answer = await api.moveFolder(old, path);
    await go({ folder: answer.path ?? path, q: "" });
    say(`${done} ${answer.path ?? path}.`);
    $("files-heading").focus();
  } catch (error) {
    sayError(error);
  }
}

$("delete-folder-button").addEventListener("click", async () => {
  const path = browse.folder;
  if (!window.confirm(`Delete the folder ${path}? Only an empty folder can be deleted.`)) return;
  clearError();
  try {
    await api.deleteFolder(path);
    await go({ folder: parentOf(path), q: "" });
    say(`Deleted the folder ${path}.`);
    $("files-heading").focus();
  } catch (error) {
    const count = error instanceof ApiError ? error.details?.file_count : null;
    sayError(count ? `${path} still holds ${plural(count, "file")}: move or delete them first.` : error);
  }
});

// -- list or grid -------------------------------------------------------------------------------

/** Show the files as a list (a table) or a grid of cards; remember the choice when it is the person's. */
function setView(view, { remember = true } = {}) {
  const grid = view === "grid";
  $("files-section").classList.toggle("grid-view", grid);
  $("view-list").setAttribute("aria-pressed", String(!grid));
  $("view-grid").setAttribute("aria-pressed", String(grid));
  if (!remember) return;
  try {
    localStorage.setItem(VIEW_KEY, grid ? "grid" : "list");
  } catch {
    // Storage disabled: the choice lasts until the page is left.
  }
}

/** Return the view chosen on an earlier visit ("list" when none, or when storage is disabled). */
function savedView() {
  try {
    return localStorage.getItem(VIEW_KEY) || "list";
  } catch {
    return "list";
  }
}

$("view-list").addEventListener("click", () => setView("list"));
$("view-grid").addEventListener("click", () => setView("grid"));

function drawPager(count) {
  $("prev-page").disabled = browse.page === 0;
  $("next-page").disabled = !browse.nextCursor;
  const first = browse.page * PAGE_SIZE + (count ? 1 : 0);
  $("page-info").textContent = count ? `Files ${first}–${first + count - 1}` : "";
}

$("next-page").addEventListener("click", async () => {
  if (!browse.nextCursor) return;
  browse.cursors[browse.page + 1] = browse.nextCursor;
  browse.page += 1;
  await refreshFiles();
  say(`Page ${browse.page + 1}.`);
});

$("prev-page").addEventListener("click", async () => {
  if (browse.page === 0) return;
  browse.page -= 1;
  await refreshFiles();
  say(`Page ${browse.page + 1}.`);
});

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("search-input").value.trim();
  await go({ q });
  const count = $("files-body").children.length;
  if (q) say(`${plural(count, "file")} match “${q}”${browse.nextCursor ? " on this page" : ""}.`);
});

$("status-filter").addEventListener("change", async (event) => {
  await go({ status: event.target.value });
  say(event.target.value === "rejected" ? "Showing files the content check refused." : "Showing your files.");
});

$("search-clear").addEventListener("click", async () => {
  $("search-input").value = "";
  await go({ q: "" });
  $("search-input").focus();
});

async function download(file) {
  clearError();
  try {
    const { url } = await api.downloadUrl(file.id);
    saveFromUrl(url);
    say(`Downloading ${file.file_name}.`);
  } catch (error) {
    sayError(downloadErrorText(file, error));
  }
}

function startRename(row, file) {
  const cell = row.querySelector("td.name");
  const original = Array.from(cell.childNodes);
  const form = element("form", { className: "rename" });
  const label = element("label", { className: "visually-hidden", text: `New name for ${file.file_name}` });
  const input = element("input");
  input.id = `rename-${file.id}`;
  label.htmlFor = input.id;
  input.value = file.file_name;
  input.required = true;
  input.maxLength = 255;
  const cancel = () => {
    cell.replaceChildren(...original);
    row.querySelector(`button[aria-label="Rename ${CSS.escape(file.file_name)}"]`)?.focus();
  };
  form.append(label, input, element("button", { text: "Save" }), button("Cancel", { onClick: cancel }));
  form.querySelector("button:not([type=button])").type = "submit";
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name || name === file.file_name) {
      cancel();
      return;
    }
    try {
      const updated = await api.updateFile(file.id, { file_name: name });
      await refreshFiles();
      say(`Renamed ${file.file_name} to ${updated.file_name}.`);
      document.querySelector(`tr[data-id="${CSS.escape(file.id)}"] button[aria-label^="Rename"]`)?.focus();
    } catch (error) {
      sayError(error);
      input.focus();
    }
  });
  cell.replaceChildren(form);
  input.focus();
  // Select the name without its extension, as file managers do.
  const dot = file.file_name.lastIndexOf(".");
  input.setSelectionRange(0, dot > 0 ? dot : file.file_name.length);
}

async function remove(file) {
  if (!window.confirm(`Delete ${file.file_name}? This cannot be undone.`)) return;
  clearError();
  try {
    await api.deleteFile(file.id);
    say(`Deleted ${file.file_name}.`);
    await Promise.all([refreshFiles(), refreshUsage()]);
    $("files-heading").focus();
  } catch (error) {
    sayError(error);
  }
}

// -- start -------------------------------------------------------------------------------------

$("files-heading").tabIndex = -1; // a focus target after actions that remove the focused row
setView(savedView(), { remember: false });
loadLimits();

if (api.signedIn) {
  showSignedIn().catch((error) => {
    showSignedOut();
    if (!(error instanceof ApiError && error.status === 401)) sayError(error);
  });
} else {
  showSignedOut();
}
