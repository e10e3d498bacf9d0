// Backoff and retries (retry.js), the same for API calls and for sending bytes to S3.
import { describe, expect, it, vi } from "vitest";
import { ApiError } from "./errors.js";
import { RETRY, storageError, useFakeDrive, wait, waits } from "./fakes.js";
import { backoffDelay, withRetries } from "./retry.js";

useFakeDrive();

describe("backoff", () => {
  it("doubles from baseDelay up to maxDelay, with jitter in the upper half", () => {
    const low = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, RETRY, () => 0));
    const high = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, RETRY, () => 1));
    expect(high).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(low).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it("retries network errors, 5xx and 429, waiting longer each time", async () => {
    const errors = [
      new ApiError(0, "network_error", "offline"),
      storageError(500),
      storageError(503, "SlowDown"),
      new ApiError(429, "rate_limited", "slow down"),
    ];
    const operation = vi.fn(async () => {
      if (errors.length) throw errors.shift();
      return "done";
    });
    const result = await withRetries(operation, { retry: RETRY, wait, random: () => 1 });
    expect(result).toBe("done");
    expect(operation).toHaveBeenCalledTimes(5);
    expect(waits).toEqual([100, 200, 400, 800]);
  });

  it("honours Retry-After", async () => {
    let first = true;
    await withRetries(
      async () => {
        if (!first) return;
        first = false;
        throw new ApiError(503, "storage_unavailable", "later", {}, { retryAfter: 0.5 });
      },
      { retry: RETRY, wait },
    );
    expect(waits).toEqual([500]);
  });

  it("does not retry client errors, and gives up after `retries`", async () => {
    for (const error of [storageError(400, "BadDigest"), new ApiError(413, "file_too_large", "big")]) {
      const operation = vi.fn(async () => {
        throw error;
      });
      await expect(withRetries(operation, { retry: RETRY, wait })).rejects.toBe(error);
      expect(operation).toHaveBeenCalledTimes(1);
    }
    const always = vi.fn(async () => {
      throw storageError(500);
    });
    await expect(withRetries(always, { retry: RETRY, wait })).rejects.toMatchObject({ status: 500 });
    expect(always).toHaveBeenCalledTimes(RETRY.retries + 1);
  });

  it("stops at once when cancelled while waiting", async () => {
    const controller = new AbortController();
    const operation = vi.fn(async () => {
      throw new ApiError(0, "network_error", "offline");
    });
    const run = withRetries(operation, { retry: { ...RETRY, baseDelay: 60_000 }, signal: controller.signal });
    setTimeout(() => controller.abort(), 5);
    await expect(run).rejects.toMatchObject({ code: "aborted" });
    expect(operation).toHaveBeenCalledTimes(1);
  });
});
