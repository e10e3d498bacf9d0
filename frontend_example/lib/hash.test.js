// SHA-256 as S3 checks it (hash.js): in a pool of workers, or on this thread.
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { bytesOf, makeFile } from "./fakes.js";
import { base64, createHasher, sha256Base64 } from "./hash.js";

const expected = async (blob) =>
  createHash("sha256")
    .update(await bytesOf(blob))
    .digest("base64");

/** A Worker that answers as hash-worker.js does, or fails as a blocked one does. */
function fakeWorkers({ refuse = false, fail = false } = {}) {
  const made = [];
  class FakeWorker {
    constructor(url, options) {
      if (refuse) throw new Error("blocked by CSP");
      Object.assign(this, { url: String(url), options });
      made.push(this);
    }
    async postMessage({ id, blob }) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (fail) this.onerror({ preventDefault() {} });
      else this.onmessage({ data: { id, digest: await sha256Base64(blob) } });
    }
  }
  vi.stubGlobal("Worker", FakeWorker);
  return made;
}

afterEach(() => vi.unstubAllGlobals());

describe("hashing", () => {
  it("gives the base64 SHA-256 that S3 compares", async () => {
    const file = makeFile("a.bin", 1000);
    expect(await sha256Base64(file)).toBe(await expected(file));
    expect(base64(new Uint8Array([0, 255, 1]))).toBe("AP8B");
  });

  it("hashes on this thread without workers, and not at all without Web Crypto", () => {
    expect(createHasher()).toBe(sha256Base64); // Node has no Worker global
    vi.stubGlobal("crypto", {});
    expect(createHasher()).toBeNull();
  });

  it("hashes in at most poolSize module workers, reused", async () => {
    const made = fakeWorkers();
    const hash = createHasher({ poolSize: 2 });
    const files = ["a", "b", "c", "d", "e"].map((name, i) => makeFile(name, 100 + i));
    const digests = await Promise.all(files.map(hash));
    expect(digests).toEqual(await Promise.all(files.map(expected)));
    expect(made).toHaveLength(2);
    expect(made[0].url).toMatch(/\/hash-worker\.js$/);
    expect(made[0].options).toEqual({ type: "module" });
  });

  it("falls back to this thread when a worker cannot start or fails", async () => {
    const file = makeFile("a.bin", 10);
    fakeWorkers({ refuse: true });
    expect(await createHasher()(file)).toBe(await expected(file));
    fakeWorkers({ fail: true });
    const hash = createHasher();
    expect(await hash(file)).toBe(await expected(file));
    expect(await hash(file)).toBe(await expected(file));
  });
});
