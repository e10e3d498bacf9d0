// The Uploader (uploader.js) against a fake API (fetch) and a fake S3 (XMLHttpRequest)
// that keep real bytes: small files in batches, retries and re-signing of a PUT, and how
// files are handed to multipart.js.
import { createHash } from "node:crypto";
import { describe, expect, it, vi } from "vitest";
import { bytesOf, drive, makeFile, options, signedInClient, useFakeDrive, wait, waits } from "./fakes.js";
import { Uploader, countResults, folderOf } from "./uploader.js";

useFakeDrive();

describe("small files", () => {
  it("hashes, presigns in one batch, PUTs, and confirms all in one call", async () => {
    const client = await signedInClient();
    const files = [makeFile("a.txt", 5, { type: "text/plain" }), makeFile("b.bin", 12), makeFile("empty", 0)];
    const totals = [];
    const uploader = new Uploader(client, options({ onTotalProgress: (loaded) => totals.push(loaded) }));
    const results = await uploader.upload(files);
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
    const results = await new Uploader(client, options({ fileConcurrency: 2 })).upload(files);
    expect(results.every((r) => r.status === "complete")).toBe(true);
    expect(drive.maxInFlight).toBe(2);
  });

  it("retries a PUT after a network error and a 500, then completes", async () => {
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/obj/"), kind: "network" });
    drive.s3Faults.push({ when: (m, url) => url.includes("/obj/"), status: 500 });
    const states = [];
    const uploader = new Uploader(client, options({ onState: (i, state) => states.push(state), wait }));
    const [result] = await uploader.upload([makeFile("a.txt", 10)]);
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
    const [result] = await new Uploader(client, options()).upload([makeFile("a.txt", 10)]);
    expect(result.status).toBe("complete");
    expect(drive.count("POST /api/files/upload/")).toBe(2);
    const [, confirm] = drive.bodies.find(([call]) => call === "POST /api/files/confirm_uploads/");
    expect(confirm.ids).toEqual([result.id]);
    expect(drive.records.get(result.id).status).toBe("complete");
  });

  it("reports a refused file with a clear message and still uploads the others", async () => {
    const client = await signedInClient();
    const results = await new Uploader(client, options()).upload([makeFile("setup.exe", 3), makeFile("ok.txt", 3)]);
    expect(results.map((r) => r.status)).toEqual(["failed", "complete"]);
    expect(results[0].error.code).toBe("content_type_not_allowed");
    expect(results[0].error.message).toBe("Executable files (.exe) are not allowed.");
  });

  it("keeps a folder picked with its files as each file's folder", async () => {
    const client = await signedInClient();
    const file = makeFile("a.txt", 3);
    Object.defineProperty(file, "webkitRelativePath", { value: "trip/day1/a.txt" });
    await new Uploader(client, options()).upload([
      file,
      { file: makeFile("b.txt", 3), folder: folderOf("x/b.txt", "base") },
    ]);
    const [, presign] = drive.bodies.find(([call]) => call === "POST /api/files/upload/");
    expect(presign.files.map((spec) => spec.folder)).toEqual(["trip/day1", "base/x"]);
  });
});

describe("before hashing", () => {
  it("fails files over the file limit, of a refused type or beyond the quota at once, unhashed", async () => {
    drive.limits.max_file_size = 30;
    drive.limits.multipart_threshold = 100; // all small: each would be hashed
    drive.limits.allowed_content_types = ["text/*"];
    drive.quotaBytes = 40;
    const client = await signedInClient();
    const files = [
      makeFile("huge.txt", 35, { type: "text/plain" }),
      makeFile("photo.png", 5, { type: "image/png" }),
      makeFile("a.txt", 20, { type: "text/plain" }),
      makeFile("b.txt", 25, { type: "text/plain" }), // 20 B left after a.txt
      makeFile("c.txt", 10, { type: "text/plain" }), // still fits after b.txt failed
    ];
    const hashed = [];
    const hasher = async (blob) => {
      hashed.push(blob.name);
      return "";
    };
    const states = [];
    const uploader = new Uploader(client, options({ hasher, onState: (i, state) => states.push([i, state]) }));
    const results = await uploader.upload(files);
    expect(results.map((r) => r.status)).toEqual(["failed", "failed", "complete", "failed", "complete"]);
    expect(results.map((r) => r.error?.code ?? null)).toEqual([
      "file_too_large",
      "content_type_not_allowed",
      null,
      "quota_exceeded",
      null,
    ]);
    expect(results[0].error.message).toBe("File is 35 B; the limit is 30 B.");
    expect(results[1].error.message).toBe("Files of type image/png are not allowed here (allowed: text/*).");
    expect(results[3].error.message).toMatch(/^Uploading 25 B would exceed your quota \(20 B left\)\. /);
    expect(hashed).toEqual(["a.txt", "c.txt"]);
    for (const index of [0, 1, 3]) {
      expect(states.filter(([i]) => i === index).map(([, state]) => state)).toEqual(["queued", "failed"]);
    }
    const [, presign] = drive.bodies.find(([call]) => call === "POST /api/files/upload/");
    expect(presign.files.map((spec) => spec.file_name)).toEqual(["a.txt", "c.txt"]);
  });

  it("checks the chosen profile's limits and sends the profile with every file, multipart too", async () => {
    drive.limits.multipart_threshold = 20; // film.mp4 goes multipart
    drive.limits.profiles = {
      default: { max_file_size: 1 << 30, allowed_content_types: ["*/*"] },
      avatar: { description: "Faces", max_file_size: 30, allowed_content_types: ["image/png", "video/mp4"] },
    };
    const client = await signedInClient();
    const hashed = [];
    const hasher = async (blob) => {
      hashed.push(blob.name);
      return "";
    };
    const files = [
      makeFile("huge.png", 31, { type: "image/png" }),
      makeFile("cv.pdf", 5, { type: "application/pdf" }),
      makeFile("me.png", 10, { type: "image/png" }),
      makeFile("film.mp4", 25, { type: "video/mp4" }),
    ];
    const results = await new Uploader(client, options({ hasher, profile: "avatar" })).upload(files);
    expect(results.map((r) => r.status)).toEqual(["failed", "failed", "complete", "complete"]);
    expect(results[0].error.message).toBe("File is 31 B; the limit for avatar uploads is 30 B.");
    expect(results[1].error.message).toBe(
      "Files of type application/pdf are not allowed for avatar uploads (allowed: image/png, video/mp4).",
    );
    expect(hashed).toEqual(["me.png"]);
    const [, presign] = drive.bodies.find(([call]) => call === "POST /api/files/upload/");
    expect(presign.files.map((spec) => [spec.file_name, spec.profile])).toEqual([["me.png", "avatar"]]);
    const [, created] = drive.bodies.find(([call]) => call === "POST /api/files/multipart/");
    expect(created.profile).toBe("avatar");
    // extra.profile is the same choice; without one no profile is sent and the server's own limits apply.
    const viaExtra = await new Uploader(client, options({ hasher, extra: { profile: "avatar" } })).upload([files[1]]);
    expect(viaExtra[0].error.code).toBe("content_type_not_allowed");
    drive.bodies.length = 0;
    const plain = await new Uploader(client, options({ hasher })).upload([files[1]]);
    expect(plain[0].status).toBe("complete");
    expect(drive.bodies.find(([call]) => call === "POST /api/files/upload/")[1].files[0]).not.toHaveProperty("profile");
  });

  it("counts what pending uploads reserve, but not an interrupted upload's own reservation", async () => {
    drive.quotaBytes = 60;
    drive.records.set("other", { id: "other", file_name: "x", file_size: 30, status: "pending" });
    const client = await signedInClient();
    const store = options().store;
    const resumed = makeFile("film.bin", 40);
    store.set(resumed, { id: "gone", file_name: "film.bin", file_size: 40 }); // resumable: its 40 B are reserved
    const results = await new Uploader(client, options({ store })).upload([makeFile("new.bin", 31), resumed]);
    expect(results[0].error.code).toBe("quota_exceeded"); // 60 - 30 reserved = 30 left
    expect(results[0].error.message).toMatch(/^Uploading 31 B would exceed your quota \(30 B left\)/);
    expect(drive.count("GET /api/files/multipart/gone")).toBe(1); // the resume was tried, not refused
  });

  it("leaves the quota to the server when the usage cannot be read", async () => {
    drive.apiFaults.push({ when: (m, path) => path === "/api/files/usage", status: 403, code: "forbidden" });
    drive.quotaBytes = 1;
    const client = await signedInClient();
    const [result] = await new Uploader(client, options()).upload([makeFile("a.txt", 5)]);
    expect(result.status).toBe("complete"); // the fake server checks no quota: nothing failed it early
  });
});

describe("many files", () => {
  it("cancels one file without touching the others", async () => {
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/part/"), kind: "hang", times: 10 });
    const one = new AbortController();
    const run = new Uploader(client, options()).upload([
      { file: makeFile("big.bin", 40), signal: one.signal },
      makeFile("small", 4),
    ]);
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
    const [result] = await new Uploader(client, options({ hasher: null })).upload([file]);
    expect(result).toMatchObject({ status: "complete", multipart: true });
    expect(drive.objects.get(drive.records.get(result.id).s3_key)).toEqual(await bytesOf(file));
    expect(drive.count("POST /api/files/confirm_uploads/")).toBe(0);
  });
});

describe("pause and resume", () => {
  const partPuts = () => drive.s3Puts.filter((put) => put.url.includes("/part/")).map((put) => put.url.match(/\/(\d+)\?/)[1]);

  it("stops a multipart upload's parts, keeps those S3 holds, and sends only the rest on resume", async () => {
    const client = await signedInClient();
    const file = makeFile("big.bin", 40); // five parts of 8 B
    const hang = { when: (m, url) => /\/part\/[^/]+\/[34]\?/.test(url), kind: "hang", times: 2 };
    drive.s3Faults.push(hang);
    const states = [];
    const store = options().store;
    const uploader = new Uploader(client, options({ store, partConcurrency: 2, onState: (i, s) => states.push(s) }));
    const run = uploader.upload([file]);
    await vi.waitUntil(() => hang.times === 0 && partPuts().length === 2);
    expect(uploader.pause(0)).toBe(true);
    expect(uploader.pause(0)).toBe(false); // already paused
    await vi.waitUntil(() => states.filter((s) => s === "paused").length >= 2); // said at once, and once stopped
    const [record] = [...drive.records.values()];
    expect([...drive.uploads.get(record.upload_id).keys()].sort()).toEqual([1, 2]); // what landed stays
    expect(drive.count(/^DELETE/)).toBe(0);
    expect(store.get(file).parts.map(([n]) => n).sort()).toEqual([1, 2]);
    expect(uploader.isPaused(0)).toBe(true);
    expect(uploader.resume(0)).toBe(true);
    const [result] = await run;
    expect(result.status).toBe("complete");
    expect(partPuts().sort()).toEqual(["1", "2", "3", "4", "5"]); // 3 and 4 hung, then each part went once
    expect(drive.objects.get(record.s3_key)).toEqual(await bytesOf(file));
    expect(states).toContain("resuming");
  });

  it("aborts a paused PUT and sends the whole file again on resume, with pauseAll and resumeAll", async () => {
    const client = await signedInClient();
    const file = makeFile("a.txt", 10, { type: "text/plain" });
    const hang = { when: (m, url) => url.includes("/obj/"), kind: "hang", times: 1 };
    drive.s3Faults.push(hang);
    const uploader = new Uploader(client, options());
    const run = uploader.upload([file]);
    await vi.waitUntil(() => hang.times === 0);
    expect(uploader.pauseAll()).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(drive.s3Puts).toHaveLength(0); // nothing sent while paused
    expect(uploader.resumeAll()).toBe(1);
    const [result] = await run;
    expect(result.status).toBe("complete");
    expect(drive.s3Puts).toHaveLength(1);
    expect(drive.objects.get(drive.records.get(result.id).s3_key)).toEqual(await bytesOf(file));
  });

  it("cancels a paused multipart upload: S3 drops its parts and the store forgets it", async () => {
    const client = await signedInClient();
    const file = makeFile("big.bin", 40);
    const hang = { when: (m, url) => /\/part\/[^/]+\/[2-5]\?/.test(url), kind: "hang", times: 4 };
    drive.s3Faults.push(hang);
    const cancel = new AbortController();
    const store = options().store;
    const uploader = new Uploader(client, options({ store, partConcurrency: 4 }));
    const run = uploader.upload([{ file, signal: cancel.signal }]);
    await vi.waitUntil(() => hang.times === 0 && partPuts().length === 1);
    uploader.pause(0);
    await vi.waitUntil(() => store.get(file) && !drive.s3Puts.some((put) => put.url.endsWith("/5")));
    cancel.abort();
    const [result] = await run;
    expect(result.status).toBe("cancelled");
    expect(drive.count(/^DELETE \/api\/files\/multipart\//)).toBe(1);
    expect(store.get(file)).toBe(null);
    expect(uploader.resume(0)).toBe(false);
  });
});

describe("Uploader", () => {
  it("runs one batch at a time", async () => {
    const client = await signedInClient();
    const uploader = new Uploader(client, options());
    const first = uploader.upload([makeFile("a.txt", 3)]);
    await expect(uploader.upload([makeFile("b.txt", 3)])).rejects.toThrow(/already uploading/);
    expect((await first).map((r) => r.status)).toEqual(["complete"]);
    expect((await uploader.upload([makeFile("c.txt", 3)])).map((r) => r.status)).toEqual(["complete"]);
  });

  it("counts results by status, with the bytes resumed uploads carried over", () => {
    const results = [
      { status: "complete", resumedBytes: 16 },
      { status: "complete" },
      { status: "failed" },
      { status: "cancelled" },
      { status: "cancelled" },
    ];
    expect(countResults(results)).toEqual({ complete: 2, failed: 1, cancelled: 2, resumedBytes: 16 });
  });

  it("puts a picked file's folder under the target folder", () => {
    expect(folderOf("photos/2026/a.jpg")).toBe("photos/2026");
    expect(folderOf("a.jpg", "base/")).toBe("base");
    expect(folderOf("x/a.jpg", " base / sub ")).toBe("base/sub/x");
    expect(folderOf("", "")).toBe("");
  });
});
