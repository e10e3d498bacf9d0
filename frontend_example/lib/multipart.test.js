// Multipart uploads (multipart.js), through the Uploader, against the fake API and S3:
// parts at once, retries and re-signing of a part, resume after a reload, cancel.
import { describe, expect, it, vi } from "vitest";
import { MemoryStorage, bytesOf, drive, makeFile, options, signedInClient, useFakeDrive, waits } from "./fakes.js";
import { browserPartSize } from "./multipart.js";
import { ResumeStore } from "./resume-store.js";
import { Uploader } from "./uploader.js";

useFakeDrive();

describe("multipart", () => {
  const partsSent = () => drive.s3Puts.filter((put) => put.url.includes("/part/"));

  it("sends the parts a few at a time and completes with their ETags", async () => {
    const client = await signedInClient();
    const file = makeFile("big.bin", 8 * 6 + 3); // 7 parts of 8 bytes, the last 3
    const [result] = await new Uploader(client, options({ partConcurrency: 3 })).upload([file]);
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
    const [result] = await new Uploader(client, options()).upload([file]);
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
    new Uploader(first, { ...options(), store: new ResumeStore(storage), partConcurrency: 2 }).upload([file]);
    await vi.waitUntil(() => partsSent().length === 2 && drive.s3Faults[0].times === 1); // 1, 2 stored; 3, 4 hang
    expect(storage.length).toBe(1);
    const saved = JSON.parse(storage.getItem(ResumeStore.key(file)));
    expect(saved).toMatchObject({ file_name: "film.mp4", file_size: 40, part_size: 8 });
    // Each finished part was saved as it finished, with the ETag S3 gave it.
    const stored = drive.uploads.get(saved.upload_id);
    expect(saved.parts.sort()).toEqual([1, 2].map((n) => [n, stored.get(n).etag]));

    // After the reload: a new client, the same file picked again.
    drive.s3Faults = [];
    drive.s3Puts = [];
    const second = await signedInClient();
    const states = [];
    const [result] = await new Uploader(second, {
      ...options(),
      store: new ResumeStore(storage),
      onState: (i, state, detail) => states.push([state, detail]),
    }).upload([makeFile("film.mp4", 40)]);
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

  it("completes with the ETags saved as parts finished when S3's list of parts leaves them out", async () => {
    const storage = new MemoryStorage();
    const file = makeFile("film.mp4", 8 * 3);
    const first = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => /\/part\/[^/]+\/3\?/.test(url), kind: "hang" });
    new Uploader(first, { ...options(), store: new ResumeStore(storage) }).upload([file]);
    await vi.waitUntil(() => partsSent().length === 2);
    const listed = drive.status.bind(drive);
    drive.status = (record) => {
      const answer = listed(record);
      return { ...answer, parts: answer.parts.map((part) => ({ ...part, etag: null })) };
    };
    drive.s3Faults = [];
    const second = await signedInClient();
    const [result] = await new Uploader(second, { ...options(), store: new ResumeStore(storage) }).upload([file]);
    expect(result).toMatchObject({ status: "complete", resumedBytes: 16 });
    const [, complete] = drive.bodies.find(([call]) => call.endsWith("/complete"));
    const stored = drive.uploads.get(drive.records.get(result.id).upload_id);
    expect(complete.parts).toEqual([1, 2, 3].map((n) => ({ part_number: n, etag: stored.get(n).etag })));
  });

  it("asks for the smallest parts S3 allows when the server's default is bigger: a reload loses little", async () => {
    const MiB = 1024 * 1024;
    expect(browserPartSize(30 * MiB, 16 * MiB)).toBe(5 * MiB);
    expect(browserPartSize(60 * 1024 * MiB, 16 * MiB)).toBe(7 * MiB); // 10,000 parts of 7 MiB hold 60 GiB
    expect(browserPartSize(200 * 1024 * MiB, 16 * MiB)).toBeNull(); // needs 21 MiB parts: the server grows its own
    expect(browserPartSize(30 * MiB, 5 * MiB)).toBeNull(); // the server's default is as small already
    expect(browserPartSize(30 * MiB, undefined)).toBeNull(); // unknown: the server decides
    drive.limits.default_part_size = 16 * MiB;
    const client = await signedInClient();
    const [result] = await new Uploader(client, options()).upload([makeFile("big.bin", 40)]);
    expect(result.status).toBe("complete");
    const [, create] = drive.bodies.find(([call]) => call === "POST /api/files/multipart/");
    expect(create.part_size).toBe(5 * MiB);
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
    const [result] = await new Uploader(client, {
      ...options(),
      store: new ResumeStore(storage),
      partConcurrency: 2,
    }).upload([makeFile("big.bin", 40)]);
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
    const [result] = await new Uploader(client, { ...options(), store: new ResumeStore(storage) }).upload([file]);
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
    const [result] = await new Uploader(client, { ...options(), store: new ResumeStore(storage) }).upload([file]);
    expect(result.status).toBe("complete");
    expect(drive.count("GET /api/files/multipart/mp-of-bob")).toBe(0);
  });

  it("aborts the upload on the server when cancelled, and forgets it", async () => {
    const storage = new MemoryStorage();
    const client = await signedInClient();
    drive.s3Faults.push({ when: (m, url) => url.includes("/part/"), kind: "hang", times: 10 });
    const controller = new AbortController();
    const run = new Uploader(client, {
      ...options(),
      store: new ResumeStore(storage),
      signal: controller.signal,
    }).upload([makeFile("big.bin", 40)]);
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

});
