// What the person picked or dropped, as [{file, relativePath}]: relativePath is the file's
// path inside a picked or dropped folder ("" for a file on its own).

/** Return [{file, relativePath}] for the files of a file input (a folder input sets webkitRelativePath). */
export function pickedItems(files) {
  return Array.from(files || [], (file) => ({ file, relativePath: file.webkitRelativePath || "" }));
}

/** Return [{file, relativePath}] for dropped files and, walked recursively, dropped folders. */
export async function droppedItems(dataTransfer) {
  const entries = Array.from(dataTransfer?.items || [])
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.());
  if (!entries.length || entries.some((entry) => !entry)) {
    // No entry API (or a non-file item): take the flat file list.
    return Array.from(dataTransfer?.files || [], (file) => ({ file, relativePath: "" }));
  }
  const out = [];
  for (const entry of entries) await walkEntry(entry, out);
  return out;
}

/** Append entry's files to out: the entry itself, or everything under a folder, depth first. */
async function walkEntry(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    // fullPath is "/folder/sub/name"; a file dropped on its own has no folder.
    const relativePath = entry.fullPath.replace(/^\//, "");
    out.push({ file, relativePath: relativePath.includes("/") ? relativePath : "" });
    return;
  }
  const reader = entry.createReader();
  // readEntries returns at most ~100 entries a call: read until it returns none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walkEntry(child, out);
  }
}
