// upload.js's retry, re-sign and resume logic, with fetch (the API) and
// XMLHttpRequest (S3) replaced by fakes that keep real bytes.
import { createHash } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  ApiError,
  ERROR_HELP,
  ResumeStore,
  S3DriveClient,
  TransferMeter,
  backoffDelay,
  describeError,
  droppedItems,
  folderOf,
  rateText,
  uploadFiles,
  withRetries,
} from "../../upload.js";
import { FakeDrive, MemoryStorage, bytesOf, installFakeXHR, makeFile } from "./fakes.js";

const RETRY = { retries: 4, baseDelay: 100, maxDelay: 1000 };

let drive;
let waits;
const wait = async (ms) => {
  waits.push(ms);
};

async function signedInClient() {
  const client = new S3DriveClient({ storage: new MemoryStorage(), retry: RETRY, wait });
  await client.login("alice", "password1");
  return client;
}

function options(extra = {}) {
  return { retry: RETRY, wait, store: new ResumeStore(new MemoryStorage()), ...extra };
}

const storageError = (status, code = "InternalError", message = code) =>
  new ApiError(status, code, message, {}, { source: "storage" });

beforeEach(() => {
  drive = new FakeDrive();
  waits = [];
  vi.stubGlobal("fetch", drive.fetch);
  installFakeXHR(drive);
});

afterEach(() => {
  vi.unstubAllGlobals();
  delete globalThis.XMLHttpRequest;
});

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

describe("API client", () => {
  it("retries a presign answered 503 (the server did nothing), but not one answered 500", async () => {
    const client = await signedInClient();
    const spec = { file_name: "a.txt", content_type: "text/plain", file_size: 1 };
    drive.apiFaults.push({
      when: (m, p) => p === "/api/files/upload/",
      status: 503,
      code: "storage_unavailable",
      times: 2,
    });
    await client.presign([spec]);
    expect(drive.count("POST /api/files/upload/")).toBe(3);

    drive.apiFaults.push({ when: (m, p) => p === "/api/files/upload/", status: 500, code: "internal_error" });
    await expect(client.presign([spec])).rejects.toMatchObject({ status: 500, code: "internal_error" });
    expect(drive.count("POST /api/files/upload/")).toBe(4);
  });

  it("retries idempotent calls after network errors and 5xx", async () => {
    const client = await signedInClient();
    drive.apiFaults.push({ when: (m, p) => p === "/api/files/usage", kind: "network" });
    drive.apiFaults.push({ when: (m, p) => p === "/api/files/usage", status: 502, code: "http_error" });
    await expect(client.usage()).rejects.toMatchObject({ code: "not_found" }); // the fake has no usage route
    expect(drive.count("GET /api/files/usage")).toBe(3);
  });

  it("refreshes an expired access token once and repeats the call", async () => {
    const client = await signedInClient();
    drive.expiredTokens.add("Bearer access-1");
    await client.listFiles({ q: "x" }).catch(() => {});
    expect(drive.calls).toEqual([
      "POST /api/auth/login",
      "GET /api/files/",
      "POST /api/auth/refresh",
      "GET /api/files/",
    ]);
    expect(client.tokens.access_token).toBe("access-2");
  });

  it("ends the session when the refresh token is refused", async () => {
    const client = await signedInClient();
    const ended = vi.fn();
    client.onSignedOut = ended;
    drive.expiredTokens.add("Bearer access-1");
    client.tokens.refresh_token = "stale";
    await expect(client.usage()).rejects.toMatchObject({ status: 401 });
    expect(client.signedIn).toBe(false);
    expect(ended).toHaveBeenCalled();
  });

  it("has a message and a hint for every error code of the API", () => {
    const codes = [
      "bad_request",
      "unauthorized",
      "token_expired",
      "token_revoked",
      "invalid_token",
      "forbidden",
      "registration_closed",
      "not_found",
      "conflict",
      "object_missing",
      "username_taken",
      "invalid_state",
      "file_too_large",
      "batch_too_large",
      "content_type_not_allowed",
      "validation_error",
      "integrity_mismatch",
      "rate_limited",
      "storage_unavailable",
      "database_unavailable",
      "quota_exceeded",
      "internal_error",
    ];
    for (const code of codes) {
      expect(ERROR_HELP[code], code).toBeDefined();
      const text = describeError(new ApiError(400, code, ""));
      expect(text, code).toContain(ERROR_HELP[code].title);
    }
    const invalid = new ApiError(422, "validation_error", "The request has invalid fields.", {
      file_size: ["Must be greater than or equal to 0."],
    });
    expect(describeError(invalid)).toBe(
      "The request has invalid fields: file_size: Must be greater than or equal to 0.",
    );
    const limited = new ApiError(429, "rate_limited", "Too many requests.", {}, { retryAfter: 30 });
    expect(describeError(limited)).toBe("Too many requests. Wait a moment and try again. (Retry after 30 s.)");
    const bug = new ApiError(500, "internal_error", "An unexpected error occurred.", {}, { requestId: "abc123" });
    expect(describeError(bug)).toContain("Request id: abc123.");
    const quota = new ApiError(507, "quota_exceeded", "The upload needs 5 MiB; 1 MiB is free.");
    expect(describeError(quota)).toBe(
      "The upload needs 5 MiB; 1 MiB is free. Delete some files, or ask an administrator for more space.",
    );
  });
});

describe("small files", () => {
  it("hashes, presigns in one batch, PUTs, and confirms all in one call", async () => {
    const client = await signedInClient();
    const files = [makeFile("a.txt", 5, { type: "text/plain" }), makeFile("b.bin", 12), makeFile("empty", 0)];
    const totals = [];
    const results = await uploadFiles(client, files, options({ onTotalProgress: (loaded) => totals.push(loaded) }));
    expect(results.map((r) => r.status)).toEqual(["complete", "complete", "complete"]);
    expect(drive.count("POST /api/files/upload/")).toBe(1);
    expect(drive.count("POST /api/files/confirm_uploads/")).toBe(1);
    const [, presign] = drive.bodies.find(([call]) => call === "POST /api/files/upload/");
    for (const [index, spec] of presign.files.entries()) {
      const expected = createHash("sha256")
        .update(await bytesOf(files[index]))
        .digest("base64");
      expect(spec.checksum_sha256).toBe(expected);
    }
    expect(presign.files[0].content_type).toBe("text/plain");
    expect(presign.files[1].content_type).toBe("application/octet-stream");
    for (const [index, result] of results.entries()) {
      const record = drive.records.get(result.id);
      expect(drive.objects.get(record.s3_key)).toEqual(await bytesOf(files[index]));
    }
    expect(totals.at(-1)).toBe(17);
  });

  it("sends at most fileConcurrency files at once", async () => {
    const client = await signedInClient();
    const files = ["a", "b", "c", "d", "e"].map((name) => makeFile(name, 6));
    const results = await uploadFiles(client, files, options({ fileConcurrency: 2 }));
    expect(results.every((r) => r.status === "complete")).toBe(true);
    expect(drive.maxInFlight).toBe(2);
  });

  it("retries a PUT after a network error and a 500, then completes", async () => {
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/obj/"), kind: "network" });
    drive.s3Faults.push({ when: (m, url) => url.includes("/obj/"), status: 500 });
    const states = [];
    const [result] = await uploadFiles(
      client,
      [makeFile("a.txt", 10)],
      options({ onState: (i, state) => states.push(state), wait }),
    );
    expect(result.status).toBe("complete");
    expect(states.filter((s) => s === "retrying")).toHaveLength(2);
    expect(waits.length).toBe(2);
    expect(waits[1]).toBeGreaterThan(waits[0] / 2); // backoff, with jitter
    expect(drive.s3Puts).toHaveLength(1);
  });

  it("presigns a file again when S3 refuses its expired URL", async () => {
    const client = await signedInClient();
    drive.s3Faults.push({
      when: (m, url) => url.includes("/obj/"),
      status: 403,
      code: "AccessDenied",
      message: "Request has expired",
    });
    const [result] = await uploadFiles(client, [makeFile("a.txt", 10)], options());
    expect(result.status).toBe("complete");
    expect(drive.count("POST /api/files/upload/")).toBe(2);
    const [, confirm] = drive.bodies.find(([call]) => call === "POST /api/files/confirm_uploads/");
    expect(confirm.ids).toEqual([result.id]);
    expect(drive.records.get(result.id).status).toBe("complete");
  });

  it("reports a refused file with a clear message and still uploads the others", async () => {
    const client = await signedInClient();
    const results = await uploadFiles(client, [makeFile("setup.exe", 3), makeFile("ok.txt", 3)], options());
    expect(results.map((r) => r.status)).toEqual(["failed", "complete"]);
    expect(results[0].error.code).toBe("content_type_not_allowed");
    expect(results[0].error.message).toBe("Executable files (.exe) are not allowed.");
  });

  it("keeps a folder picked with its files as each file's folder", async () => {
    const client = await signedInClient();
    const file = makeFile("a.txt", 3);
    Object.defineProperty(file, "webkitRelativePath", { value: "trip/day1/a.txt" });
    await uploadFiles(client, [file, { file: makeFile("b.txt", 3), folder: folderOf("x/b.txt", "base") }], options());
    const [, presign] = drive.bodies.find(([call]) => call === "POST /api/files/upload/");
    expect(presign.files.map((spec) => spec.folder)).toEqual(["trip/day1", "base/x"]);
  });
});

describe("multipart", () => {
  const partsSent = () => drive.s3Puts.filter((put) => put.url.includes("/part/"));

  it("sends the parts a few at a time and completes with their ETags", async () => {
    const client = await signedInClient();
    const file = makeFile("big.bin", 8 * 6 + 3); // 7 parts of 8 bytes, the last 3
    const [result] = await uploadFiles(client, [file], options({ partConcurrency: 3 }));
    expect(result).toMatchObject({ status: "complete", multipart: true, resumedBytes: 0 });
    expect(partsSent()).toHaveLength(7);
    expect(drive.maxInFlight).toBe(3);
    const [, complete] = drive.bodies.find(([call]) => call.endsWith("/complete"));
    expect(complete.parts.map((p) => p.part_number)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(drive.objects.get(drive.records.get(result.id).s3_key)).toEqual(await bytesOf(file));
    const [, create] = drive.bodies.find(([call]) => call === "POST /api/files/multipart/");
    expect(create.checksum_sha256).toBeUndefined(); // S3 cannot verify a whole-file digest of a multipart upload
  });

  it("retries a failed part with backoff, and signs a part again after a 403 for an expired URL", async () => {
    const client = await signedInClient();
    const isPart = (n) => (m, url) => url.includes(`/part/`) && url.includes(`/${n}?`);
    drive.s3Faults.push({ when: isPart(2), kind: "network" });
    drive.s3Faults.push({ when: isPart(2), status: 503, code: "SlowDown" });
    drive.s3Faults.push({ when: isPart(3), status: 403, code: "AccessDenied", message: "Request has expired" });
    const file = makeFile("big.bin", 40);
    const [result] = await uploadFiles(client, [file], options());
    expect(result.status).toBe("complete");
    expect(waits).toHaveLength(2); // two backoffs for part 2; the 403 re-signs at once
    const signed = drive.bodies.filter(([call]) => call.endsWith("/sign")).map(([, body]) => body.part_numbers);
    expect(signed[0]).toEqual([1, 2, 3, 4, 5]);
    expect(signed.slice(1)).toEqual([[3]]); // a fresh URL only for the refused part
    expect(drive.objects.get(drive.records.get(result.id).s3_key)).toEqual(await bytesOf(file));
  });

  it("resumes after a reload: only the parts S3 lacks are sent again", async () => {
    const storage = new MemoryStorage(); // localStorage survives the reload
    const file = makeFile("film.mp4", 8 * 5); // 5 parts
    const first = await signedInClient();
    // First visit: parts 3 and later never finish (the page is reloaded meanwhile).
    drive.s3Faults.push({ when: (m, url) => /\/part\/[^/]+\/[345]\?/.test(url), kind: "hang", times: 3 });
    uploadFiles(first, [file], { ...options(), store: new ResumeStore(storage), partConcurrency: 2 });
    await vi.waitUntil(() => partsSent().length === 2 && drive.s3Faults[0].times === 1); // 1, 2 stored; 3, 4 hang
    expect(storage.length).toBe(1);
    const saved = JSON.parse(storage.getItem(ResumeStore.key(file)));
    expect(saved).toMatchObject({ file_name: "film.mp4", file_size: 40, part_size: 8 });

    // After the reload: a new client, the same file picked again.
    drive.s3Faults = [];
    drive.s3Puts = [];
    const second = await signedInClient();
    const states = [];
    const [result] = await uploadFiles(second, [makeFile("film.mp4", 40)], {
      ...options(),
      store: new ResumeStore(storage),
      onState: (i, state, detail) => states.push([state, detail]),
    });
    expect(result).toMatchObject({ status: "complete", id: saved.id, resumedBytes: 16 });
    expect(drive.count(`GET /api/files/multipart/${saved.id}`)).toBe(1);
    expect(drive.count("POST /api/files/multipart/")).toBe(1); // no second upload was started
    expect(
      partsSent()
        .map((put) => Number(put.url.match(/\/(\d+)\?/)[1]))
        .sort(),
    ).toEqual([3, 4, 5]);
    expect(partsSent().reduce((sum, put) => sum + put.size, 0)).toBe(24); // fewer bytes than the file's 40
    expect(states).toContainEqual(["resuming", { resumedBytes: 16, parts: 5, pendingParts: 3 }]);
    expect(drive.objects.get(drive.records.get(saved.id).s3_key)).toEqual(await bytesOf(file));
    expect(storage.length).toBe(0); // done: nothing left to resume
  });

  it("stops the other parts when one fails for good, and keeps the upload to resume", async () => {
    const storage = new MemoryStorage();
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => /\/part\/[^/]+\/1\?/.test(url), kind: "hang" });
    drive.s3Faults.push({ when: (m, url) => /\/part\/[^/]+\/2\?/.test(url), status: 400, code: "BadDigest" });
    const xhrs = [];
    const Base = globalThis.XMLHttpRequest;
    globalThis.XMLHttpRequest = class extends Base {
      constructor() {
        super();
        xhrs.push(this);
      }
    };
    const [result] = await uploadFiles(client, [makeFile("big.bin", 40)], {
      ...options(),
      store: new ResumeStore(storage),
      partConcurrency: 2,
    });
    expect(result.status).toBe("failed");
    expect(result.error.code).toBe("BadDigest");
    expect(xhrs.filter((xhr) => xhr.url.includes("/part/")).map((xhr) => xhr.aborted)).toEqual([true, false]);
    expect(drive.count(/^DELETE/)).toBe(0); // not a cancel: the parts stay for a later resume
    expect(storage.length).toBe(1);
  });

  it("starts afresh when the saved upload is gone on the server", async () => {
    const storage = new MemoryStorage();
    const file = makeFile("film.mp4", 20);
    new ResumeStore(storage).set(file, { id: "mp-unknown", file_name: "film.mp4", file_size: 20, part_size: 8 });
    const client = await signedInClient();
    const [result] = await uploadFiles(client, [file], { ...options(), store: new ResumeStore(storage) });
    expect(result.status).toBe("complete");
    expect(result.id).not.toBe("mp-unknown");
    expect(drive.count("GET /api/files/multipart/mp-unknown")).toBe(1);
    expect(drive.count("POST /api/files/multipart/")).toBe(1);
  });

  it("does not touch another account's saved upload of a same-looking file", async () => {
    const storage = new MemoryStorage();
    const file = makeFile("film.mp4", 20);
    const saved = { id: "mp-of-bob", file_name: "film.mp4", file_size: 20, part_size: 8, owner: "bob" };
    new ResumeStore(storage).set(file, saved);
    const client = await signedInClient();
    client.user = { id: "alice" };
    const [result] = await uploadFiles(client, [file], { ...options(), store: new ResumeStore(storage) });
    expect(result.status).toBe("complete");
    expect(drive.count("GET /api/files/multipart/mp-of-bob")).toBe(0);
  });

  it("aborts the upload on the server when cancelled, and forgets it", async () => {
    const storage = new MemoryStorage();
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/part/"), kind: "hang", times: 10 });
    const controller = new AbortController();
    const run = uploadFiles(client, [makeFile("big.bin", 40)], {
      ...options(),
      store: new ResumeStore(storage),
      signal: controller.signal,
    });
    await vi.waitUntil(() => drive.count(/\/sign$/) === 1 && storage.length === 1);
    controller.abort();
    const [result] = await run;
    expect(result.status).toBe("cancelled");
    const [record] = [...drive.records.values()];
    expect(drive.count(`DELETE /api/files/multipart/${record.id}`)).toBe(1);
    expect(record.status).toBe("aborted");
    expect(drive.count(/\/complete$/)).toBe(0);
    expect(storage.length).toBe(0);
  });

  it("cancels one file without touching the others", async () => {
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/part/"), kind: "hang", times: 10 });
    const one = new AbortController();
    const run = uploadFiles(
      client,
      [{ file: makeFile("big.bin", 40), signal: one.signal }, makeFile("small", 4)],
      options(),
    );
    await vi.waitUntil(() => drive.count(/\/sign$/) === 1);
    one.abort();
    const results = await run;
    expect(results.map((r) => r.status)).toEqual(["cancelled", "complete"]);
  });

  it("follows the server when it answers a batch with a multipart ticket", async () => {
    drive.batchMultipart = true;
    drive.serverThreshold = 16;
    drive.limits.multipart_threshold = 30; // what the client was told differs from what the server does
    const client = await signedInClient();
    const file = makeFile("mid.bin", 20);
    const [result] = await uploadFiles(client, [file], options({ hasher: null }));
    expect(result).toMatchObject({ status: "complete", multipart: true });
    expect(drive.objects.get(drive.records.get(result.id).s3_key)).toEqual(await bytesOf(file));
    expect(drive.count("POST /api/files/confirm_uploads/")).toBe(0);
  });
});

describe("TransferMeter", () => {
  it("reports speed and time left from recent samples", () => {
    let now = 0;
    const meter = new TransferMeter({ now: () => now });
    expect(meter.update(0, 1000)).toMatchObject({ speed: null, eta: null });
    now = 1000;
    expect(meter.update(100, 1000)).toMatchObject({ speed: 100, eta: 9 });
    now = 2000;
    expect(meter.update(300, 1000)).toMatchObject({ speed: 150 });
    now = 2500;
    expect(meter.update(50, 1000)).toMatchObject({ speed: null }); // a retry restarted the bytes
  });
});

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

describe("rateText", () => {
  it("says how much, how fast and how long is left", () => {
    expect(rateText({ loaded: 3 * 1024 ** 2, total: 10 * 1024 ** 2, speed: 1024 ** 2, eta: 7 })).toBe(
      "3.0 MiB of 10.0 MiB · 1.0 MiB/s · 7 s left",
    );
    expect(rateText({ loaded: 10, total: 10, speed: 0, eta: 0 })).toBe("10 B of 10 B");
  });
});
