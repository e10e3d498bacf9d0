// Picked and dropped files and folders (drop.js).
import { describe, expect, it } from "vitest";
import { droppedItems, pickedItems } from "./drop.js";

describe("droppedItems", () => {
  // The browser's FileSystemEntry API, reduced to what droppedItems reads.
  const fileEntry = (fullPath) => ({ isFile: true, fullPath, file: (ok) => ok({ name: fullPath.split("/").pop() }) });
  const dirEntry = (children, perRead = 2) => ({
    isFile: false,
    createReader: () => {
      let next = 0;
      return {
        readEntries: (ok) => {
          ok(children.slice(next, next + perRead)); // a few a call, as browsers do
          next += perRead;
        },
      };
    },
  });
  const item = (entry) => ({ kind: "file", webkitGetAsEntry: () => entry });

  it("walks dropped folders to the last entry and keeps each file's path", async () => {
    const holiday = dirEntry([
      fileEntry("/holiday/a.jpg"),
      fileEntry("/holiday/b.jpg"),
      dirEntry([fileEntry("/holiday/day1/c.jpg")]),
    ]);
    const items = await droppedItems({ items: [item(fileEntry("/notes.txt")), item(holiday)] });
    expect(items.map(({ file, relativePath }) => [file.name, relativePath])).toEqual([
      ["notes.txt", ""],
      ["a.jpg", "holiday/a.jpg"],
      ["b.jpg", "holiday/b.jpg"],
      ["c.jpg", "holiday/day1/c.jpg"],
    ]);
  });

  it("falls back to the flat file list without the entry API", async () => {
    const files = [{ name: "x.txt" }];
    const items = await droppedItems({ items: [{ kind: "file" }], files });
    expect(items).toEqual([{ file: files[0], relativePath: "" }]);
  });
});

describe("pickedItems", () => {
  it("keeps the path of files picked with their folder, and none for single files", () => {
    const files = [{ name: "a.txt", webkitRelativePath: "trip/day1/a.txt" }, { name: "b.txt", webkitRelativePath: "" }];
    expect(pickedItems(files).map((item) => [item.file.name, item.relativePath])).toEqual([
      ["a.txt", "trip/day1/a.txt"],
      ["b.txt", ""],
    ]);
    expect(pickedItems(null)).toEqual([]);
  });
});
