// File-type symbols (icons.js): which kind each content type gets, and that every kind is drawn.
import { describe, expect, it } from "vitest";
import { ICON_PATHS, fileIcon } from "./icons.js";

describe("fileIcon", () => {
  it("names each kind of file in words, with a symbol that is drawn", () => {
    const types = [
      "image/png",
      "video/mp4",
      "audio/mpeg",
      "application/pdf",
      "application/zip",
      "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
      "application/vnd.ms-powerpoint",
      "application/msword",
      "TEXT/PLAIN",
      "font/woff2",
      "application/octet-stream",
      undefined,
    ];
    const icons = types.map((content_type) => fileIcon({ content_type }));
    expect(icons.map((icon) => icon.label)).toEqual([
      "Image",
      "Video",
      "Audio",
      "PDF document",
      "Archive",
      "Spreadsheet",
      "Presentation",
      "Document",
      "Text file",
      "Font",
      "File",
      "File",
    ]);
    expect(fileIcon({ content_type: "application/pdf" }).kind).toBe("pdf");
    for (const { kind } of icons) expect(ICON_PATHS[kind].length).toBeGreaterThan(0);
  });

  it("draws only SVG path data: no emoji, no characters from a font", () => {
    for (const paths of Object.values(ICON_PATHS)) {
      for (const d of paths) expect(d).toMatch(/^[MmLlHhVvZzAaCcSsQqTt0-9 .,-]+$/);
    }
  });
});
