// What the server's content check says about a file, in words: each state and each reason
// code as a sentence, a file's thumbnail, and why a download has to wait. Shared by the page
// (app.js) and <FileList>, so both say the same things. No DOM here; the symbols are in icons.js.
import { describeError, toApiError } from "./errors.js";
import { fileIcon } from "./icons.js";

/** The side of the square a thumbnail is shown in, in CSS pixels (the preview keeps its shape inside). */
export const THUMBNAIL_SIZE = 48;

/** What each inspection state reads as (File.inspection.state). */
export const INSPECTION_LABELS = Object.freeze({
  pending: "Checking content…",
  passed: "Checked",
  rejected: "Refused",
});

/** Per reason code of a refused file (File.inspection.reason.code), what it means for people. */
export const REASON_WORDS = Object.freeze({
  content_mismatch: "Refused: the content is not what the file's name or type says",
  executable_content: "Refused: this file is a program",
  image_too_large: "Refused: the image has too many pixels",
  media_too_long: "Refused: the recording is too long",
  archive_bomb: "Refused: the archive would unpack to far too much data",
  unsafe_archive: "Refused: the archive holds unsafe entries",
  active_content: "Refused: the PDF contains scripts or actions",
  image_too_small: "Refused: the image is too small",
  media_too_short: "Refused: the recording is too short",
  corrupt_file: "Refused: the file is damaged or cannot be read",
});

/** Return a file's inspection state ("pending", "passed", "rejected"), or null if it was never checked. */
export function inspectionState(file) {
  return file?.inspection?.state || null;
}

/** Return the sentence for why a file was refused: the words of its code, then the server's message. */
export function reasonText(reason) {
  const words = REASON_WORDS[reason?.code] || INSPECTION_LABELS.rejected;
  const message = reason?.message?.trim();
  return message ? `${words}. ${message}` : `${words}.`;
}

/** Return what a file's row says about its content check; "" for a file that was never checked. */
export function inspectionText(file) {
  const state = inspectionState(file);
  if (!state) return "";
  if (state === "rejected") return reasonText(file.inspection.reason);
  return INSPECTION_LABELS[state] || state;
}

/**
 * Return the attributes of a file's thumbnail <img> (a fixed square, loaded lazily, the file's
 * name as its text), or null when the server made no preview.
 */
export function thumbnailOf(file) {
  const src = file?.inspection?.thumbnail_url;
  if (!src) return null;
  return {
    src,
    alt: file.file_name,
    width: THUMBNAIL_SIZE,
    height: THUMBNAIL_SIZE,
    loading: "lazy",
    decoding: "async",
  };
}

/**
 * Return what the file list shows of one file, beyond its name and size: {state, text,
 * thumbnail, icon, canDownload}. state is null for a file that was never checked; icon stands
 * in for a missing thumbnail; a refused file cannot be downloaded.
 */
export function fileEntry(file) {
  const state = inspectionState(file);
  return {
    state,
    text: inspectionText(file),
    thumbnail: thumbnailOf(file),
    icon: fileIcon(file),
    canDownload: file?.status !== "rejected" && state !== "rejected",
  };
}

/** Return the sentence for a download that failed: a file still being checked says so, by name. */
export function downloadErrorText(file, error) {
  if (toApiError(error).code === "not_ready") {
    const name = file.file_name;
    return `${name} is still being checked. You can download it once the check has passed; try again in a moment.`;
  }
  return describeError(error);
}
