// What the content check says, in words (inspection.js): states, reasons, thumbnails, downloads.
import { describe, expect, it } from "vitest";
import { ApiError, describeError } from "./errors.js";
import {
  INSPECTION_LABELS,
  REASON_WORDS,
  THUMBNAIL_SIZE,
  downloadErrorText,
  fileEntry,
  inspectionText,
  reasonText,
  thumbnailOf,
} from "./inspection.js";

// The reason codes of API.md ("Content inspection and previews").
const REASON_CODES = [
  "content_mismatch",
  "executable_content",
  "image_too_large",
  "media_too_long",
  "archive_bomb",
  "unsafe_archive",
  "active_content",
  "image_too_small",
  "media_too_short",
  "corrupt_file",
];

function file(inspection, extra = {}) {
  return { id: "f1", file_name: "holiday.png", size: 2048, status: "complete", inspection, ...extra };
}

function inspected(state, extra = {}) {
  return {
    state,
    detected_type: "image/png",
    width: 1920,
    height: 1080,
    duration_seconds: null,
    pages: null,
    entry_count: null,
    thumbnail_url: null,
    reason: null,
    ...extra,
  };
}

describe("REASON_WORDS", () => {
  it("has a sentence for every reason code, each its own, each saying the file was refused", () => {
    expect(Object.keys(REASON_WORDS).sort()).toEqual([...REASON_CODES].sort());
    for (const code of REASON_CODES) expect(REASON_WORDS[code], code).toMatch(/^Refused: \S/);
    expect(new Set(Object.values(REASON_WORDS)).size).toBe(REASON_CODES.length);
    expect(REASON_WORDS.executable_content).toBe("Refused: this file is a program");
  });

  it("is followed by the server's message, and an unknown code still reads as refused", () => {
    const reason = { code: "executable_content", message: "The file is a Windows program (PE)." };
    expect(reasonText(reason)).toBe("Refused: this file is a program. The file is a Windows program (PE).");
    expect(reasonText({ code: "corrupt_file", message: "" })).toBe("Refused: the file is damaged or cannot be read.");
    expect(reasonText({ code: "something_new", message: "Not today." })).toBe("Refused. Not today.");
    expect(reasonText(null)).toBe("Refused.");
  });
});

describe("inspectionText", () => {
  it("says each state in words, and nothing for a file that was never checked", () => {
    expect(inspectionText(file(inspected("pending")))).toBe("Checking content…");
    expect(inspectionText(file(inspected("passed")))).toBe("Checked");
    expect(INSPECTION_LABELS.pending).toBe("Checking content…");
    const reason = { code: "content_mismatch", message: "The bytes are a PDF, not image/png." };
    expect(inspectionText(file(inspected("rejected", { reason }), { status: "rejected" }))).toBe(
      "Refused: the content is not what the file's name or type says. The bytes are a PDF, not image/png.",
    );
    expect(inspectionText(file(null))).toBe("");
    expect(inspectionText(file(undefined))).toBe("");
  });
});

describe("thumbnailOf and fileEntry", () => {
  it("gives a lazily loaded, fixed-size image named after the file when there is a preview", () => {
    const url = "https://bucket.example/previews/f1.webp?X-Amz-Signature=abc";
    expect(thumbnailOf(file(inspected("passed", { thumbnail_url: url })))).toEqual({
      src: url,
      alt: "holiday.png",
      width: THUMBNAIL_SIZE,
      height: THUMBNAIL_SIZE,
      loading: "lazy",
      decoding: "async",
    });
    expect(thumbnailOf(file(inspected("passed")))).toBeNull();
    expect(thumbnailOf(file(null))).toBeNull();
  });

  it("lets every file but a refused one be downloaded", () => {
    expect(fileEntry(file(inspected("pending")))).toMatchObject({ state: "pending", canDownload: true });
    expect(fileEntry(file(null))).toEqual({
      state: null,
      text: "",
      thumbnail: null,
      icon: { kind: "file", label: "File" }, // no content_type here
      canDownload: true,
    });
    const refused = file(inspected("rejected", { reason: { code: "archive_bomb", message: "" } }), {
      status: "rejected",
    });
    expect(fileEntry(refused)).toMatchObject({
      state: "rejected",
      text: "Refused: the archive would unpack to far too much data.",
      canDownload: false,
    });
  });
});

describe("downloadErrorText", () => {
  it("names a file that is still being checked, and describes other errors as usual", () => {
    const notReady = new ApiError(
      409,
      "not_ready",
      "The file's content is still being inspected; it can be downloaded once that passes.",
    );
    expect(downloadErrorText(file(inspected("pending")), notReady)).toBe(
      "holiday.png is still being checked. You can download it once the check has passed; try again in a moment.",
    );
    const gone = new ApiError(404, "not_found", "File not found.");
    expect(downloadErrorText(file(null), gone)).toBe(describeError(gone));
    expect(describeError(new ApiError(409, "not_ready", ""))).toBe(
      "The file's content is still being checked. Try again in a moment.",
    );
  });
});
