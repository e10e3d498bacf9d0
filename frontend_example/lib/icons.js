// File-type and folder symbols as SVG path data (24 × 24, drawn with a stroke), and which one a
// file gets. No DOM here: the page and <FileList> draw the paths as inline SVG, so nothing depends
// on an emoji or icon font (many systems have neither) or on a CDN.

// A page with a folded corner: what every file symbol is drawn on.
const PAGE = ["M6 2.5h8l5 5v14H6z", "M14 2.5v5h5"];
const LINES = ["M8.5 12h7", "M8.5 15h7", "M8.5 18h4.5"];

/** Each kind's paths: the page, and a mark inside it; the folder is drawn alone. */
export const ICON_PATHS = Object.freeze({
  image: [...PAGE, "M8 19l3-4 2 2.5 1.5-2 2.5 3.5z", "M11 11a1.3 1.3 0 1 1-2.6 0a1.3 1.3 0 1 1 2.6 0"],
  video: [...PAGE, "M10 11.5v7l5.5-3.5z"],
  audio: [...PAGE, "M11 18a1.5 1.5 0 1 1-3 0a1.5 1.5 0 1 1 3 0", "M11 18v-7l5-1.5v6.5", "M16 16a1.5 1.5 0 1 1-3 0a1.5 1.5 0 1 1 3 0"],
  pdf: [...PAGE, "M8.5 11h7v3h-7z", ...LINES.slice(1)],
  archive: [...PAGE, "M11 3v2", "M11 7v2", "M11 11v2", "M9.5 14h3v4h-3z"],
  spreadsheet: [...PAGE, "M8 11h9v8H8z", "M8 15h9", "M12.5 11v8"],
  presentation: [...PAGE, "M8 11h9v6H8z", "M12.5 17v2.5"],
  document: [...PAGE, "M8.5 10h7", ...LINES],
  text: [...PAGE, ...LINES],
  font: [...PAGE, "M8.5 19l3.5-9 3.5 9", "M10 15.5h5"],
  file: PAGE,
  folder: ["M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2h8.5A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"],
});

// [test on the content type, kind, words], first match wins: what a file without a preview shows.
const FILE_KINDS = [
  [(t) => t.startsWith("image/"), "image", "Image"],
  [(t) => t.startsWith("video/"), "video", "Video"],
  [(t) => t.startsWith("audio/"), "audio", "Audio"],
  [(t) => t === "application/pdf", "pdf", "PDF document"],
  [(t) => /zip|tar|rar|7z|bzip|xz/.test(t), "archive", "Archive"],
  [(t) => /spreadsheet|excel|csv/.test(t), "spreadsheet", "Spreadsheet"],
  [(t) => /presentation|powerpoint/.test(t), "presentation", "Presentation"],
  [(t) => /msword|wordprocessing|opendocument\.text|rtf/.test(t), "document", "Document"],
  [(t) => t.startsWith("text/") || t === "application/json" || t === "application/xml", "text", "Text file"],
  [(t) => t.startsWith("font/"), "font", "Font"],
];

/** Return {kind, label} of a file's type: the kind names its ICON_PATHS, the label says it ("Text file"). */
export function fileIcon(file) {
  const type = String(file?.content_type || "").toLowerCase();
  const found = FILE_KINDS.find(([matches]) => matches(type));
  return found ? { kind: found[1], label: found[2] } : { kind: "file", label: "File" };
}
