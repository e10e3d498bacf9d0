// Folder paths (folders.js).
import { describe, expect, it } from "vitest";
import { folderName, joinPath, parentOf } from "./folders.js";

describe("folder paths", () => {
  it("joins, finds the parent and names a folder", () => {
    expect(joinPath("trips", "2026")).toBe("trips/2026");
    expect(joinPath("", " trips/ ", "/2026/", null)).toBe("trips/2026");
    expect(joinPath("")).toBe("");
    expect(parentOf("trips/2026/june")).toBe("trips/2026");
    expect(parentOf("trips")).toBe("");
    expect(folderName("trips/2026")).toBe("2026");
    expect(folderName("")).toBe("All files");
  });
});
