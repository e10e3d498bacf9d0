// Sending bytes to S3 (storage.js) through the fake XMLHttpRequest.
import { describe, expect, it, vi } from "vitest";
import { drive, makeFile, useFakeDrive } from "./fakes.js";
import { isRefusedUrl } from "./retry.js";
import { parseS3Error, sendToStorage, sendWithRetries } from "./storage.js";

useFakeDrive();

const target = { method: "PUT", presigned_url: "https://s3.test/obj/users/u/a.txt?sig=1", headers: { "x-a": "1" } };

describe("storage", () => {
  it("reads S3's XML error body", () => {
    expect(parseS3Error("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")).toEqual({
      code: "AccessDenied",
      message: "Request has expired",
    });
    expect(parseS3Error("")).toEqual({ code: undefined, message: undefined });
  });

  it("PUTs with the signed headers, reports progress, and resolves with the ETag", async () => {
    const seen = [];
    const sent = await sendToStorage(target, makeFile("a.txt", 10), { onProgress: (bytes) => seen.push(bytes) });
    expect(sent).toEqual({ status: 200, etag: '"object"' });
    expect(seen).toEqual([5, 10]);
    expect(drive.objects.get("users/u/a.txt")).toHaveLength(10);
  });

  it("turns S3's refusal into a storage ApiError", async () => {
    drive.s3Faults.push({ when: () => true, status: 403, code: "AccessDenied", message: "Request has expired" });
    const refusal = await sendToStorage(target, makeFile("a.txt", 10)).catch((error) => error);
    expect(refusal).toMatchObject({ status: 403, code: "AccessDenied", source: "storage" });
    expect(refusal.message).toBe("Storage refused the upload: Request has expired.");
    expect(isRefusedUrl(refusal)).toBe(true);
  });

  it("rejects with an abort error when cancelled", async () => {
    drive.s3Faults.push({ when: () => true, kind: "hang" });
    const controller = new AbortController();
    const sending = sendToStorage(target, makeFile("a.txt", 10), { signal: controller.signal });
    controller.abort();
    await expect(sending).rejects.toMatchObject({ code: "aborted" });
    await expect(sendToStorage(target, makeFile("a.txt", 1), { signal: controller.signal })).rejects.toMatchObject({
      code: "aborted",
    });
  });

  it("asks for a fresh URL at most twice, without waiting", async () => {
    drive.s3Faults.push({ when: () => true, status: 403, code: "AccessDenied", times: 3 });
    const renew = vi.fn(async () => {});
    const wait = vi.fn(async () => {});
    const sending = sendWithRetries(makeFile("a.txt", 10), {
      target: () => target,
      renew,
      wait,
      retry: { retries: 3, baseDelay: 1, maxDelay: 1 },
      onProgress: () => {},
      onRetry: () => {},
    });
    await expect(sending).rejects.toMatchObject({ status: 403 });
    expect(renew.mock.calls.map(([, attempt]) => attempt)).toEqual([1, 2]);
    expect(wait).not.toHaveBeenCalled();
  });
});
