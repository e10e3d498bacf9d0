// Concurrency helpers (concurrency.js).
import { describe, expect, it } from "vitest";
import { Limiter, anySignal, chunks, runLimited } from "./concurrency.js";

const tick = () => new Promise((resolve) => setTimeout(resolve, 1));

describe("concurrency", () => {
  it("runs at most `limit` functions at once, and all of them", async () => {
    const limiter = new Limiter(2);
    let active = 0;
    let most = 0;
    const job = async (n) => {
      active += 1;
      most = Math.max(most, active);
      await tick();
      active -= 1;
      return n;
    };
    expect(await Promise.all([1, 2, 3, 4, 5].map((n) => limiter.run(() => job(n))))).toEqual([1, 2, 3, 4, 5]);
    expect(most).toBe(2);
    await expect(limiter.run(async () => Promise.reject(new Error("no")))).rejects.toThrow("no");
    expect(limiter.active).toBe(0);
  });

  it("works through items in lanes", async () => {
    const seen = [];
    let active = 0;
    let most = 0;
    await runLimited(["a", "b", "c", "d"], 3, async (item, index) => {
      active += 1;
      most = Math.max(most, active);
      await tick();
      seen.push([item, index]);
      active -= 1;
    });
    expect(seen.sort()).toEqual([["a", 0], ["b", 1], ["c", 2], ["d", 3]]);
    expect(most).toBe(3);
    await runLimited([], 3, async () => {
      throw new Error("not called");
    });
  });

  it("aborts a combined signal when any of its signals aborts", () => {
    const one = new AbortController();
    const two = new AbortController();
    expect(anySignal([null, one.signal])).toBe(one.signal);
    expect(anySignal([null])).toBeNull();
    const both = anySignal([one.signal, two.signal]);
    expect(both.aborted).toBe(false);
    two.abort();
    expect(both.aborted).toBe(true);
    expect(anySignal([AbortSignal.abort(), one.signal]).aborted).toBe(true);
  });

  it("cuts arrays into batches", () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([], 2)).toEqual([]);
  });
});
