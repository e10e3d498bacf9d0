// Folder paths as the API writes them ("trips/2026", "" for the top): joined, split, named.
// One place for the rule, used by the Uploader (a picked folder's structure) and the page.

/** Join folder paths, trimming each segment and skipping empty ones: joinPath("a ", "/b/", "") → "a/b". */
export function joinPath(...parts) {
  return parts
    .flatMap((part) => String(part || "").split("/"))
    .map((part) => part.trim())
    .filter(Boolean)
    .join("/");
}

/** Return the folder that holds path ("a/b" → "a", "a" → ""). */
export function parentOf(path) {
  return String(path || "")
    .split("/")
    .slice(0, -1)
    .join("/");
}

/** Return a folder's last segment, or "All files" for the top. */
export function folderName(path) {
  return path ? String(path).split("/").at(-1) : "All files";
}
