// Test support for the Vitest suites beside the lib/ modules (not loaded by the page).
//
// A fake s3drive API (for fetch) and a fake S3 (for XMLHttpRequest), faithful to
// /work/shared/API.md where lib/ depends on it: batch presign, batch confirm,
// multipart create/sign/status/complete/abort, token refresh, the error envelope.
// Faults are scripted: apiFaults for API answers, s3Faults for storage answers.
//
// A suite calls useFakeDrive() once; each of its tests then finds a fresh FakeDrive in
// `drive` and the delays it waited in `waits` (live bindings: import them, read them).
import { afterEach, beforeEach, vi } from "vitest";
import { S3DriveClient } from "./api.js";
import { ApiError } from "./errors.js";
import { ResumeStore } from "./resume-store.js";

export const RETRY = { retries: 4, baseDelay: 100, maxDelay: 1000 };

export let drive = null;
export let waits = [];

/** Note a delay instead of waiting it (what the code under test would sleep). */
export const wait = async (ms) => {
  waits.push(ms);
};

/** Give each test of the calling suite a fresh FakeDrive behind fetch and XMLHttpRequest. */
export function useFakeDrive() {
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
}

/** Return a client signed in to the fake drive, retrying fast (delays go to `waits`). */
export async function signedInClient() {
  const client = new S3DriveClient({ storage: new MemoryStorage(), retry: RETRY, wait });
  await client.login("alice", "password1");
  return client;
}

/** Return Uploader options for tests: fast retries and a resume store of its own, plus extra. */
export function options(extra = {}) {
  return { retry: RETRY, wait, store: new ResumeStore(new MemoryStorage()), ...extra };
}

/** Return an ApiError as S3 answers it. */
export const storageError = (status, code = "InternalError", message = code) =>
  new ApiError(status, code, message, {}, { source: "storage" });

export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  get length() {
    return this.map.size;
  }
  key(i) {
    return [...this.map.keys()][i] ?? null;
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
const envelope = (status, code, message, details = {}, headers = {}) =>
  json(status, { error: { code, message, details } }, headers);

async function sha256Base64(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return btoa(String.fromCharCode(...digest));
}

export class FakeDrive {
  constructor({ threshold = 16, partSize = 8, maxBatch = 1000, batchMultipart = false, quotaBytes = 1 << 30 } = {}) {
    this.quotaBytes = quotaBytes;
    this.limits = {
      max_file_size: 1 << 30,
      max_batch: maxBatch,
      multipart_threshold: threshold,
      default_part_size: partSize,
      allowed_content_types: ["*/*"],
      tiers: ["standard"],
      url_expires_in: 3600,
    };
    this.partSize = partSize;
    this.batchMultipart = batchMultipart; // answer big files in a batch with multipart tickets
    this.records = new Map();
    this.objects = new Map(); // s3 key -> Uint8Array
    this.uploads = new Map(); // upload id -> Map(part number -> {bytes, etag})
    this.calls = []; // "METHOD /path"
    this.bodies = []; // [call, body]
    this.apiFaults = []; // {when(method, path), status, code, retryAfter?, times}
    this.s3Faults = []; // {when(method, url), kind: "network" | "hang" | number, code?, message?, times}
    this.s3Puts = []; // {url, size}
    this.inFlight = 0;
    this.maxInFlight = 0;
    this.seq = 0;
    this.token = 1;
    this.expiredTokens = new Set();
  }

  nextId(prefix) {
    this.seq += 1;
    return `${prefix}-${this.seq}`;
  }

  count(call) {
    return this.calls.filter((c) => c === call || (call instanceof RegExp && call.test(c))).length;
  }

  fault(list, ...args) {
    const index = list.findIndex((f) => f.when(...args) && (f.times ?? 1) > 0);
    if (index < 0) return null;
    const fault = list[index];
    fault.times = (fault.times ?? 1) - 1;
    return fault;
  }

  // -- the API ------------------------------------------------------------------------------

  fetch = async (url, init = {}) => {
    const method = init.method || "GET";
    const parsed = new URL(url, "http://app.test");
    const path = parsed.pathname;
    const call = `${method} ${path}`;
    this.calls.push(call);
    const body = init.body ? JSON.parse(init.body) : undefined;
    this.bodies.push([call, body]);
    const fault = this.fault(this.apiFaults, method, path);
    if (fault) {
      if (fault.kind === "network") throw new TypeError("Failed to fetch");
      const headers = fault.retryAfter != null ? { "Retry-After": String(fault.retryAfter) } : {};
      return envelope(fault.status, fault.code, fault.message || `${fault.code} (scripted)`, {}, headers);
    }
    const auth = init.headers?.Authorization || "";
    if (path.startsWith("/api/auth/")) return this.auth(path, auth);
    if (path === "/api/files/limits") return json(200, this.limits);
    if (this.expiredTokens.has(auth)) return envelope(401, "token_expired", "The token has expired.");
    if (!auth.startsWith("Bearer access-")) return envelope(401, "unauthorized", "Authentication required.");
    return this.files(method, path, body);
  };

  auth(path, auth) {
    if (path === "/api/auth/login") {
      return json(200, { access_token: `access-${this.token}`, refresh_token: "refresh-1", token_type: "Bearer" });
    }
    if (path === "/api/auth/refresh" && auth === "Bearer refresh-1") {
      this.token += 1;
      return json(200, { access_token: `access-${this.token}`, expires_in: 900 });
    }
    return envelope(401, "invalid_token", "Bad token.");
  }

  async files(method, path, body) {
    let match;
    if (method === "GET" && path === "/api/files/usage") return json(200, this.usage());
    if (method === "POST" && path === "/api/files/upload/") return this.presign(body.files);
    if (method === "POST" && path === "/api/files/confirm_uploads/") return this.confirm(body.ids);
    if (method === "POST" && path === "/api/files/multipart/") return json(201, this.createMultipart(body));
    if ((match = path.match(/^\/api\/files\/multipart\/([^/]+)(\/sign|\/complete)?$/))) {
      const record = this.records.get(decodeURIComponent(match[1]));
      if (!record?.upload_id) return envelope(404, "not_found", "No such multipart upload.");
      if (method === "POST" && match[2] === "/sign") return this.sign(record, body.part_numbers);
      if (method === "GET" && !match[2]) return json(200, this.status(record));
      if (method === "POST" && match[2] === "/complete") return this.complete(record, body.parts);
      if (method === "DELETE" && !match[2]) {
        record.status = "aborted";
        this.uploads.delete(record.upload_id);
        return json(200, { id: record.id, status: "aborted" });
      }
    }
    return envelope(404, "not_found", "No such route or resource.");
  }

  usage() {
    const records = [...this.records.values()];
    const sum = (statuses) =>
      records.filter((r) => statuses.includes(r.status)).reduce((total, r) => total + r.file_size, 0);
    const file_count = records.filter((r) => r.status === "complete").length;
    const reserved = sum(["pending", "uploading"]);
    return { used_bytes: sum(["complete"]), reserved_bytes: reserved, quota_bytes: this.quotaBytes, file_count };
  }

  presign(specs) {
    const successful = [];
    const failed = [];
    specs.forEach((spec, index) => {
      if (spec.file_name.endsWith(".exe")) {
        failed.push({
          index,
          file_name: spec.file_name,
          error: { code: "content_type_not_allowed", message: "Executable files (.exe) are not allowed." },
        });
        return;
      }
      if (this.batchMultipart && spec.file_size > (this.serverThreshold ?? this.limits.multipart_threshold)) {
        successful.push({ ...this.describe(this.createMultipart(spec)), multipart: true });
        return;
      }
      const id = this.nextId("file");
      const record = { id, ...spec, s3_key: `users/u/${id}/${spec.file_name}`, status: "pending" };
      this.records.set(id, record);
      const headers = { "Content-Type": spec.content_type, "x-amz-meta-file-id": id };
      if (spec.checksum_sha256) headers["x-amz-checksum-sha256"] = spec.checksum_sha256;
      successful.push({
        id,
        file_name: spec.file_name,
        s3_key: record.s3_key,
        status: "pending",
        method: "PUT",
        presigned_url: `https://s3.test/obj/${record.s3_key}?sig=${this.nextId("sig")}`,
        headers,
        fields: null,
        expires_at: "2030-01-01T00:00:00Z",
        multipart: false,
      });
    });
    return json(200, {
      message: "Generated upload URLs.",
      successful,
      failed,
      total_requested: specs.length,
      total_successful: successful.length,
      total_failed: failed.length,
    });
  }

  async confirm(ids) {
    const results = [];
    for (const id of ids) {
      const record = this.records.get(id);
      const object = record && this.objects.get(record.s3_key);
      let status = "success";
      if (!record) status = "not_found";
      else if (!object) status = "missing";
      else if (object.length !== record.file_size) status = "mismatch";
      else if (record.checksum_sha256 && record.checksum_sha256 !== (await sha256Base64(object))) status = "mismatch";
      if (status === "success") record.status = "complete";
      results.push({ id, s3_key: record?.s3_key, status, message: status });
    }
    const ok = results.filter((r) => r.status === "success").length;
    return json(200, { results, total_requested: ids.length, total_successful: ok, total_failed: ids.length - ok });
  }

  createMultipart(spec) {
    const id = this.nextId("mp");
    const partSize = spec.part_size || this.partSize;
    const record = {
      id,
      ...spec,
      s3_key: `users/u/${id}/${spec.file_name}`,
      status: "uploading",
      upload_id: this.nextId("upload"),
      part_size: partSize,
    };
    this.records.set(id, record);
    this.uploads.set(record.upload_id, new Map());
    return this.describe(record);
  }

  describe(record) {
    return {
      id: record.id,
      s3_key: record.s3_key,
      file_name: record.file_name,
      upload_id: record.upload_id,
      part_size: record.part_size,
      part_count: Math.max(1, Math.ceil(record.file_size / record.part_size)),
      file_size: record.file_size,
      status: record.status,
      expires_at: "2030-01-01T00:00:00Z",
    };
  }

  status(record) {
    const parts = [...(this.uploads.get(record.upload_id) || new Map()).entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([n, part]) => ({ part_number: n, size: part.bytes.length, etag: part.etag }));
    return { ...this.describe(record), parts, bytes_uploaded: parts.reduce((sum, p) => sum + p.size, 0) };
  }

  sign(record, numbers) {
    if (record.status !== "uploading")
      return envelope(409, "invalid_state", `The multipart upload is ${record.status}.`);
    const { part_count: count } = this.describe(record);
    const parts = numbers.map((n) => ({
      part_number: n,
      url: `https://s3.test/part/${record.upload_id}/${n}?sig=${this.nextId("sig")}`,
      headers: {},
      size: Math.min(record.part_size, record.file_size - (n - 1) * record.part_size),
    }));
    if (numbers.some((n) => n < 1 || n > count)) return envelope(422, "validation_error", "Bad part number.");
    return json(200, { parts, expires_at: "2030-01-01T00:00:00Z" });
  }

  complete(record, parts) {
    const stored = this.uploads.get(record.upload_id);
    const { part_count: count } = this.describe(record);
    const given = parts ?? [...stored.entries()].map(([n, p]) => ({ part_number: n, etag: p.etag }));
    const missing = [];
    for (let n = 1; n <= count; n += 1) {
      const part = stored.get(n);
      const listed = given.find((p) => p.part_number === n);
      if (!part || !listed || listed.etag.replaceAll('"', "") !== part.etag.replaceAll('"', "")) missing.push(n);
    }
    if (missing.length) return envelope(422, "integrity_mismatch", `Parts ${missing.join(", ")} are missing.`);
    const chunks = [...stored.entries()].sort((a, b) => a[0] - b[0]).map(([, p]) => p.bytes);
    const object = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
    let offset = 0;
    for (const chunk of chunks) {
      object.set(chunk, offset);
      offset += chunk.length;
    }
    this.objects.set(record.s3_key, object);
    record.status = "complete";
    return json(200, { id: record.id, file_name: record.file_name, size: object.length, status: "complete" });
  }

  // -- S3, through the fake XMLHttpRequest --------------------------------------------------

  async storage(xhr, body) {
    await Promise.resolve();
    const fault = this.fault(this.s3Faults, xhr.method, xhr.url);
    if (fault?.kind === "hang") return; // a request that never ends (until aborted or a reload)
    if (fault?.kind === "network") return xhr.finish(0);
    if (fault) {
      const code = fault.code || "InternalError";
      return xhr.finish(fault.status, `<Error><Code>${code}</Code><Message>${fault.message || code}</Message></Error>`);
    }
    const bytes = new Uint8Array(await body.arrayBuffer());
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    xhr.upload.onprogress?.({ loaded: Math.floor(bytes.length / 2), lengthComputable: true });
    await new Promise((resolve) => setTimeout(resolve, 1));
    this.inFlight -= 1;
    if (xhr.aborted) return;
    this.s3Puts.push({ url: xhr.url, size: bytes.length });
    const url = new URL(xhr.url);
    const part = url.pathname.match(/^\/part\/([^/]+)\/(\d+)$/);
    if (part) {
      const parts = this.uploads.get(part[1]);
      if (!parts) return xhr.finish(404, "<Error><Code>NoSuchUpload</Code></Error>");
      const etag = `"etag-${part[2]}-${bytes.length}"`;
      parts.set(Number(part[2]), { bytes, etag });
      return xhr.finish(200, "", { etag });
    }
    this.objects.set(decodeURIComponent(url.pathname.replace(/^\/obj\//, "")), bytes);
    return xhr.finish(200, "", { etag: '"object"' });
  }
}

/** Install a fake XMLHttpRequest whose requests `drive` answers as S3. */
export function installFakeXHR(drive) {
  class FakeXMLHttpRequest {
    constructor() {
      this.upload = {};
      this.requestHeaders = {};
      this.responseHeaders = {};
      this.status = 0;
      this.responseText = "";
      this.aborted = false;
      this.done = false;
    }
    open(method, url) {
      this.method = method;
      this.url = url;
    }
    setRequestHeader(name, value) {
      this.requestHeaders[name] = value;
    }
    getResponseHeader(name) {
      return this.responseHeaders[name.toLowerCase()] ?? null;
    }
    send(body) {
      drive.storage(this, body);
    }
    abort() {
      if (this.done) return;
      this.done = true;
      this.aborted = true;
      this.onabort?.();
    }
    finish(status, text = "", headers = {}) {
      if (this.done) return;
      this.done = true;
      this.status = status;
      this.responseText = text;
      this.responseHeaders = headers;
      if (status === 0) this.onerror?.();
      else this.onload?.();
    }
  }
  globalThis.XMLHttpRequest = FakeXMLHttpRequest;
  return FakeXMLHttpRequest;
}

/** Return a File of `size` deterministic bytes. */
export function makeFile(name, size, { type = "application/octet-stream", lastModified = 1_700_000_000_000 } = {}) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 31 + name.length * 7) & 0xff;
  return new File([bytes], name, { type, lastModified });
}

/** Return the bytes of a Blob. */
export async function bytesOf(blob) {
  return new Uint8Array(await blob.arrayBuffer());
}
