// Saved multipart uploads (resume-store.js): kept per file, listed, and whose they are.
import { describe, expect, it } from "vitest";
import { MemoryStorage, makeFile } from "./fakes.js";
import { RESUME_PREFIX, ResumeStore, mayResume } from "./resume-store.js";

describe("ResumeStore", () => {
  it("keeps a file's upload under its name, size and date", () => {
    const store = new ResumeStore(new MemoryStorage());
    const file = makeFile("film.mp4", 20);
    expect(ResumeStore.key(file)).toBe(`${RESUME_PREFIX}film.mp4:20:1700000000000`);
    expect(store.get(file)).toBeNull();
    store.set(file, { id: "mp-1", file_name: "film.mp4" });
    expect(store.get(file)).toEqual({ id: "mp-1", file_name: "film.mp4" });
    expect(store.get(makeFile("film.mp4", 20, { lastModified: 1 }))).toBeNull(); // another file
    store.delete(file);
    expect(store.get(file)).toBeNull();
  });

  it("adds each finished part to a saved upload, once, and nothing to an unsaved one", () => {
    const store = new ResumeStore(new MemoryStorage());
    const file = makeFile("film.mp4", 20);
    store.addPart(file, 1, '"e1"');
    expect(store.get(file)).toBeNull();
    store.set(file, { id: "mp-1" });
    store.addPart(file, 2, '"e2"');
    store.addPart(file, 1, '"e1"');
    store.addPart(file, 2, '"e2"');
    expect(store.get(file)).toEqual({ id: "mp-1", parts: [[1, '"e1"'], [2, '"e2"']] });
  });

  it("lists saved uploads only, and skips values that are not one", () => {
    const storage = new MemoryStorage();
    const store = new ResumeStore(storage);
    store.set(makeFile("a.bin", 20), { id: "mp-a" });
    storage.setItem("s3drive.tokens", "{}");
    storage.setItem(`${RESUME_PREFIX}broken`, "{not json");
    storage.setItem(`${RESUME_PREFIX}no-id`, '{"file_name": "x"}');
    const saved = store.list();
    expect(saved).toEqual([{ id: "mp-a", key: ResumeStore.key(makeFile("a.bin", 20)) }]);
    store.deleteKey(saved[0].key);
    expect(store.list()).toEqual([]);
  });

  it("goes on without storage, or when storage refuses to write", () => {
    const none = new ResumeStore(null);
    none.set(makeFile("a", 1), { id: "x" });
    expect(none.get(makeFile("a", 1))).toBeNull();
    expect(none.list()).toEqual([]);
    const full = new MemoryStorage();
    full.setItem = () => {
      throw new Error("QuotaExceededError");
    };
    expect(() => new ResumeStore(full).set(makeFile("a", 1), { id: "x" })).not.toThrow();
  });

  it("lets only the owner resume, or anyone while the user is not known", () => {
    expect(mayResume({ id: "x", owner: "alice" }, { id: "alice" })).toBe(true);
    expect(mayResume({ id: "x", owner: "bob" }, { id: "alice" })).toBe(false);
    expect(mayResume({ id: "x", owner: null }, { id: "alice" })).toBe(true);
    expect(mayResume({ id: "x", owner: "bob" }, null)).toBe(true);
  });
});
