// <FileList> shows each file's preview and what the content check says, in the words of
// lib/inspection.js (the plain page uses the same table).
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { S3DriveClient } from "../../lib/api.js";
import { MemoryStorage } from "../../lib/fakes.js";
import { REASON_WORDS } from "../../lib/inspection.js";
import { FileList } from "./FileList.jsx";

const client = new S3DriveClient({ storage: new MemoryStorage() });
const THUMB = "https://bucket.example/previews/p1.webp?X-Amz-Expires=300&X-Amz-Signature=abc";

function file(id, name, inspection, status = "complete") {
  return { id, file_name: name, size: 1536, status, inspection };
}

function inspected(state, extra = {}) {
  return {
    state,
    detected_type: null,
    width: null,
    height: null,
    duration_seconds: null,
    pages: null,
    entry_count: null,
    thumbnail_url: null,
    reason: null,
    ...extra,
  };
}

/** The HTML of each row, by file name. */
function rows(files) {
  const html = renderToString(<FileList client={client} files={files} />);
  const out = {};
  for (const row of html.match(/<tr>.*?<\/tr>/g).slice(1)) {
    out[row.match(/class="file-name">([^<]*)</)[1]] = row;
  }
  return out;
}

describe("<FileList>", () => {
  const files = [
    file("p1", "photo.png", inspected("passed", { thumbnail_url: THUMB, detected_type: "image/png" })),
    file("p2", "notes.txt", inspected("passed")),
    file("p3", "video.mp4", inspected("pending")),
    file(
      "p4",
      "invoice.pdf",
      inspected("rejected", { reason: { code: "executable_content", message: "The file is a Windows program (PE)." } }),
      "rejected",
    ),
    file("p5", "old.bin", null),
  ];

  it("shows a thumbnail, lazily loaded at a fixed size and named after the file, only where there is one", () => {
    const row = rows(files);
    const image = row["photo.png"].match(/<img [^>]*>/)[0];
    expect(image).toContain(`src="${THUMB.replaceAll("&", "&amp;")}"`);
    expect(image).toContain('alt="photo.png"');
    expect(image).toContain('loading="lazy"');
    expect(image).toContain('width="48"');
    expect(image).toContain('height="48"');
    for (const name of ["notes.txt", "video.mp4", "invoice.pdf", "old.bin"]) expect(row[name]).not.toContain("<img");
  });

  it("says what the content check found: checking, checked, refused and why, or nothing", () => {
    const row = rows(files);
    expect(row["photo.png"]).toContain('<span class="file-check check-passed"> Checked</span>');
    expect(row["video.mp4"]).toContain('<span class="file-check check-pending"> Checking content…</span>');
    const why = `${REASON_WORDS.executable_content}. The file is a Windows program (PE).`;
    expect(row["invoice.pdf"]).toContain(`<span class="file-check check-rejected"> ${why}</span>`);
    expect(row["invoice.pdf"]).toContain("Refused: this file is a program.");
    expect(row["old.bin"]).not.toContain("file-check");
  });

  it("offers Download for every file but a refused one (a pending one's download says it is not ready)", () => {
    const row = rows(files);
    for (const name of ["photo.png", "notes.txt", "video.mp4", "old.bin"]) {
      expect(row[name]).toContain(`aria-label="Download ${name}"`);
    }
    expect(row["invoice.pdf"]).not.toContain("Download");
  });

  it("says so when there are no files, and has its alert and status regions", () => {
    const html = renderToString(<FileList client={client} files={[]} empty="Nothing refused." />);
    expect(html).toContain("Nothing refused.");
    expect(html).not.toContain("<table");
    expect(html).toContain('role="alert"');
    expect(html).toContain('role="status"');
  });
});
