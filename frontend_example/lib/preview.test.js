// The preview dialog's choices (preview.js): what is shown inline, and the details in words.
import { describe, expect, it } from "vitest";
import { fileDetails, previewKind } from "./preview.js";

const passed = { state: "passed" };
const file = (content_type, fields = {}) => ({
  id: "f1",
  file_name: "x",
  size: 1536,
  status: "complete",
  content_type,
  inspection: passed,
  ...fields,
});

describe("previewKind", () => {
  it("shows images, video, audio and PDF inline, and nothing else", () => {
    const types = ["image/png", "image/JPEG", "video/mp4", "audio/mpeg", "application/pdf", "image/svg+xml", "text/html"];
    expect(types.map((type) => previewKind(file(type)))).toEqual(["image", "image", "video", "audio", "pdf", null, null]);
  });

  it("shows no preview of a refused or unfinished file", () => {
    expect(previewKind(file("image/png", { status: "rejected", inspection: { state: "rejected" } }))).toBeNull();
    expect(previewKind(file("image/png", { status: "pending" }))).toBeNull();
    expect(previewKind(file("image/png", { inspection: null }))).toBe("image"); // never checked: as downloads
  });
});

describe("fileDetails", () => {
  it("says the size in words and in bytes, the type, and what inspection measured", () => {
    const details = fileDetails(
      file("image/png", {
        file_name: "holiday.png",
        folder: "trips/2026",
        inspection: { state: "passed", width: 400, height: 300, duration_seconds: null, pages: null },
      }),
    );
    expect(details).toEqual([
      ["Name", "holiday.png"],
      ["Size", "1.5 KiB (1,536 bytes)"],
      ["Type", "image/png"],
      ["Dimensions", "400 × 300 px"],
      ["Folder", "trips/2026"],
    ]);
    const video = fileDetails(file("video/mp4", { inspection: { state: "passed", duration_seconds: 75, pages: null } }));
    expect(video).toContainEqual(["Duration", "1 min 15 s"]);
    expect(fileDetails(file("application/pdf", { inspection: { pages: 12 } }))).toContainEqual(["Pages", "12"]);
    expect(fileDetails(file("image/png", { profile: "avatar" }))).toContainEqual(["Profile", "avatar"]);
    expect(fileDetails(file("image/png", { profile: "default" })).map(([term]) => term)).not.toContain("Profile");
  });
});
