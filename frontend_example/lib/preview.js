// What the preview dialog can show of a file, and its details in words. No DOM here.
import { formatBytes, formatDuration } from "./format.js";
import { fileEntry } from "./inspection.js";

// Types a browser plays or shows inline. SVG is left out on purpose: the server serves it
// inline as text/plain (API: scripts must not run in the bucket's origin).
const PREVIEW_KINDS = [
  [/^image\/(png|jpeg|gif|webp|avif|bmp|x-icon|vnd\.microsoft\.icon)$/, "image"],
  [/^video\/(mp4|webm|ogg)$/, "video"],
  [/^audio\/(mpeg|mp3|ogg|wav|x-wav|wave|webm|aac|mp4|x-m4a|flac)$/, "audio"],
  [/^application\/pdf$/, "pdf"],
];

/**
 * Return how the preview dialog shows a file: "image", "video", "audio", "pdf", or null (details
 * only) for other types and for files that cannot be downloaded (refused, or not complete).
 */
export function previewKind(file) {
  if (file?.status !== "complete" || !fileEntry(file).canDownload) return null;
  const type = String(file.content_type || "").toLowerCase();
  return PREVIEW_KINDS.find(([pattern]) => pattern.test(type))?.[1] ?? null;
}

const exact = new Intl.NumberFormat("en-US");

/** Return [[term, value], …]: a file's name, size (in words and bytes), type, and what inspection measured. */
export function fileDetails(file, { dateFormat = null } = {}) {
  const inspection = file?.inspection || {};
  const rows = [
    ["Name", file.file_name],
    ["Size", `${formatBytes(file.size)} (${exact.format(file.size)} bytes)`],
    ["Type", file.content_type || "unknown"],
  ];
  if (inspection.width && inspection.height) rows.push(["Dimensions", `${inspection.width} × ${inspection.height} px`]);
  if (inspection.duration_seconds) rows.push(["Duration", formatDuration(inspection.duration_seconds)]);
  if (inspection.pages) rows.push(["Pages", exact.format(inspection.pages)]);
  if (file.folder) rows.push(["Folder", file.folder]);
  if (file.profile && file.profile !== "default") rows.push(["Profile", file.profile]);
  if (file.created_at && dateFormat) rows.push(["Uploaded", dateFormat.format(new Date(file.created_at))]);
  return rows;
}
