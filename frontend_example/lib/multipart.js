// One big file as an S3 multipart upload: several parts at once, each part signed just
// ahead of use, retried, and resumable after a page reload (the upload id waits in the
// ResumeStore; the parts S3 already holds are read back from the API).
import { anySignal, runLimited } from "./concurrency.js";
import { ApiError, abortError, pausedError } from "./errors.js";
import { ResumeStore, mayResume } from "./resume-store.js";
import { DEFAULT_RETRY, sleep } from "./retry.js";
import { sendWithRetries } from "./storage.js";

export const DEFAULT_PART_CONCURRENCY = 4;
export const SIGN_BATCH = 50; // part URLs per sign call: few calls, yet URLs fresh when used
// S3's multipart rules, as the server checks them (s3drive/parts.py): parts of at least 5 MiB, at most 10,000.
const MIB = 1024 * 1024;
export const MIN_PART_SIZE = 5 * MIB;
export const MAX_PARTS = 10_000;

// Answers after which the saved upload cannot go on: a new pick starts afresh.
const DEAD_UPLOAD_CODES = ["invalid_state", "integrity_mismatch", "not_found"];

/** Return the byte length of part `number` (1-based) of a file of `size` bytes. */
export function partLength(size, partSize, number) {
  return size ? Math.min(partSize, size - (number - 1) * partSize) : 0;
}

/**
 * Return the part_size to ask for a browser upload of size bytes, or null to take the server's
 * default. A reload loses the parts in flight (partConcurrency of them), so browsers want the
 * smallest parts S3 allows for the file (whole MiB, at most 10,000 parts); asked for only when
 * that is smaller than the server's default_part_size (GET /api/files/limits), which the server
 * would otherwise use.
 */
export function browserPartSize(size, defaultPartSize) {
  const smallest = Math.max(MIN_PART_SIZE, Math.ceil(size / MAX_PARTS / MIB) * MIB);
  return defaultPartSize && smallest < defaultPartSize ? smallest : null;
}

/** Hands out part URLs, signing them in batches ahead of use, and again when expired or refused. */
class PartSigner {
  constructor(client, uploadId, pending, { batch = SIGN_BATCH, signal = null, margin = 30_000 } = {}) {
    this.client = client;
    this.uploadId = uploadId;
    this.pending = pending; // part numbers still to send, in upload order
    this.batch = batch;
    this.signal = signal;
    this.margin = margin; // a URL this close to expiry is signed again rather than used
    this.urls = new Map(); // part number -> Promise of {url, headers, expiresAt}
  }

  /** Return {url, headers} for part n, signing it with the next parts that have no URL yet. */
  async get(n) {
    const cached = this.urls.get(n);
    if (cached) {
      const target = await cached.catch(() => null);
      if (target && target.expiresAt - Date.now() > this.margin) return target;
      if (this.urls.get(n) === cached) this.urls.delete(n);
    }
    if (!this.urls.has(n)) this._sign([n, ...this.pending.filter((m) => m !== n && !this.urls.has(m))]);
    return this.urls.get(n);
  }

  _sign(wanted) {
    const numbers = wanted.slice(0, this.batch);
    const signed = this.client.signParts(this.uploadId, numbers, { signal: this.signal });
    for (const m of numbers) {
      const one = signed.then((answer) => {
        const part = answer.parts.find((p) => p.part_number === m);
        if (!part) throw new ApiError(0, "client_error", `The server did not sign part ${m}.`);
        const expiresAt = Date.parse(answer.expires_at) || Date.now() + 3_600_000;
        return { url: part.url, headers: part.headers || {}, expiresAt };
      });
      // A failed batch must not stay cached: each part signs again on its next try.
      one.catch(() => this.urls.get(m) === one && this.urls.delete(m));
      this.urls.set(m, one);
    }
  }

  /** Forget part n's URL (S3 refused it), so get(n) signs a fresh one. */
  invalidate(n) {
    this.urls.delete(n);
  }

  /** Note that part n is stored. */
  done(n) {
    this.urls.delete(n);
    this.pending = this.pending.filter((m) => m !== n);
  }
}

/** The bytes of one upload as one number: parts stored plus the parts on their way. */
class PartProgress {
  constructor(fileSize, storedBytes, onProgress) {
    this.fileSize = fileSize;
    this.resumedBytes = storedBytes; // what S3 held before this run
    this.finished = storedBytes;
    this.inFlight = new Map(); // part number -> bytes sent so far
    this.onProgress = onProgress;
  }

  /** Note that part n has sent bytes so far (0 again when it is retried). */
  sending(n, bytes) {
    this.inFlight.set(n, bytes);
    this.report();
  }

  /** Note that part n, of size bytes, is stored. */
  stored(n, size) {
    this.inFlight.delete(n);
    this.finished += size;
    this.report();
  }

  /** Tell onProgress(loaded, total). */
  report() {
    let loaded = this.finished;
    for (const bytes of this.inFlight.values()) loaded += bytes;
    this.onProgress(Math.min(loaded, this.fileSize), this.fileSize);
  }
}

/**
 * Upload one big file as a multipart upload, resuming a saved one for the same file.
 *
 * Options: spec (FileSpec for a new upload), created (a multipart ticket the server
 * already made), defaultPartSize (the server's, from its limits: a new upload asks for
 * browserPartSize() parts), store (ResumeStore), partConcurrency, signal, pause (a signal that
 * stops sending parts but keeps the upload: the next run resumes it), retry, wait, signBatch,
 * onState(state, detail), onProgress(loaded, total), onRetry(error, attempt, delay).
 * Resolves with {id, status: "complete", file, resumedBytes}; rejects with ApiError
 * (code "aborted" after a cancel, which also aborts the upload on the server; "paused" after a pause).
 */
export function uploadMultipart(client, file, options = {}) {
  return new MultipartUpload(client, file, options).run();
}

/** One run of uploadMultipart: the upload's ticket, and the ETags of the parts S3 holds. */
class MultipartUpload {
  constructor(
    client,
    file,
    {
      spec,
      created = null,
      defaultPartSize = null,
      store = new ResumeStore(),
      partConcurrency = DEFAULT_PART_CONCURRENCY,
      signal = null,
      pause = null,
      retry = DEFAULT_RETRY,
      wait = sleep,
      signBatch = SIGN_BATCH,
      onState = () => {},
      onProgress = () => {},
      onRetry = () => {},
    } = {},
  ) {
    Object.assign(this, { client, file, spec, store, partConcurrency, signal, retry, wait, signBatch });
    Object.assign(this, { defaultPartSize, pause, onState, onProgress, onRetry });
    this.upload = created;
    this.done = new Map(); // part number -> ETag (or null when S3 did not expose it)
  }

  /** Resume or start the upload, send the missing parts, complete it; resolve with the outcome. */
  async run() {
    if (!this.upload) {
      const finished = await this._resume();
      if (finished) return finished;
    }
    if (!this.upload) await this._create();
    this._save();
    const { pending, progress } = this._plan();
    try {
      await this._sendParts(pending, progress);
      const record = await this._complete();
      return { id: this.upload.id, status: "complete", file: record, resumedBytes: progress.resumedBytes };
    } catch (error) {
      throw await this._giveUp(error);
    }
  }

  /** Take up a saved upload of this file; return the outcome if S3 already has all of it. */
  async _resume() {
    const { file } = this;
    const resumed = await findResumable(this.client, file, this.store, this.signal, this.onState);
    if (resumed?.status === "complete") {
      this.onProgress(file.size, file.size);
      this.onState("complete");
      return { id: resumed.id, status: "complete", file: null, resumedBytes: file.size };
    }
    if (!resumed) return null;
    this.upload = resumed;
    // S3's list of parts decides what is done; the ETags saved as each part finished fill in any it leaves out.
    const saved = new Map(this.store.get(file)?.parts || []);
    for (const part of resumed.parts || []) {
      // A part of another length than this part should have (another part size, say) is sent again.
      if (part.size === partLength(file.size, resumed.part_size, part.part_number)) {
        this.done.set(part.part_number, part.etag || saved.get(part.part_number) || null);
      }
    }
    return null;
  }

  async _create() {
    this.onState("signing");
    const partSize = browserPartSize(this.file.size, this.defaultPartSize);
    const spec = partSize ? { ...this.spec, part_size: partSize } : this.spec;
    // Not cancellable mid-request: the id must come back, so that a cancel can abort it.
    this.upload = await this.client.createMultipart(spec);
  }

  /** Keep the upload's id, and the parts S3 holds, where a reload finds them. */
  _save() {
    const { upload, file } = this;
    this.store.set(file, {
      id: upload.id,
      upload_id: upload.upload_id,
      file_name: upload.file_name ?? file.name,
      file_size: file.size,
      part_size: upload.part_size,
      folder: this.spec?.folder ?? null,
      owner: this.client.user?.id ?? null,
      parts: [...this.done.entries()],
      saved_at: new Date().toISOString(),
    });
  }

  /** Return the part numbers still to send and the progress counter; tell what is resumed. */
  _plan() {
    const { upload, file, done } = this;
    const partCount = upload.part_count || Math.max(1, Math.ceil(file.size / upload.part_size));
    const pending = [];
    for (let n = 1; n <= partCount; n += 1) if (!done.has(n)) pending.push(n);
    let resumedBytes = 0;
    for (const n of done.keys()) resumedBytes += partLength(file.size, upload.part_size, n);
    const progress = new PartProgress(file.size, resumedBytes, this.onProgress);
    progress.report();
    const detail = { resumedBytes, parts: partCount, pendingParts: pending.length };
    this.onState(resumedBytes ? "resuming" : "uploading", detail);
    return { pending, progress };
  }

  /** Send the pending parts, partConcurrency at once. */
  async _sendParts(pending, progress) {
    // When one part fails for good, the others stop too: the upload is reported failed at once.
    const halt = new AbortController();
    const signal = anySignal([this.signal, this.pause, halt.signal]);
    const signer = new PartSigner(this.client, this.upload.id, pending, { batch: this.signBatch, signal });
    try {
      await runLimited(pending, this.partConcurrency, async (n) => {
        if (signal.aborted) throw abortError();
        const blob = this._part(n);
        const sent = await sendWithRetries(blob, {
          target: () => signer.get(n),
          renew: (error, attempt) => {
            signer.invalidate(n);
            this.onRetry(error, attempt, 0);
          },
          signal,
          retry: this.retry,
          wait: this.wait, // signer.get() signs again if the URL expired while waiting
          onProgress: (bytes) => progress.sending(n, bytes),
          onRetry: this.onRetry,
        });
        signer.done(n);
        this.done.set(n, sent.etag);
        this.store.addPart(this.file, n, sent.etag); // at once: a reload from now on does not send it again
        progress.stored(n, blob.size);
      });
    } catch (error) {
      halt.abort();
      throw error;
    }
  }

  /** Return the bytes of part n. */
  _part(n) {
    const { file, upload } = this;
    const start = (n - 1) * upload.part_size;
    return file.slice(start, start + partLength(file.size, upload.part_size, n));
  }

  /** Ask the server to assemble the parts; resolve with the File record. */
  async _complete() {
    this.onState("completing");
    const etags = [...this.done.entries()].sort((a, b) => a[0] - b[0]);
    // Without ETags (a bucket whose CORS hides them), the server lists the parts itself.
    const parts = etags.every(([, etag]) => etag) ? etags.map(([n, etag]) => ({ part_number: n, etag })) : null;
    const record = await this.client.completeMultipart(this.upload.id, parts, { signal: this.signal });
    this.store.delete(this.file);
    this.onProgress(this.file.size, this.file.size);
    this.onState("complete");
    return record;
  }

  /** Clean up after error; return what the upload rejects with. */
  async _giveUp(error) {
    if (this.signal?.aborted) {
      // A cancel, not a reload: give the parts and the quota back.
      this.store.delete(this.file);
      await this.client.abortMultipart(this.upload.id).catch(() => {});
      return abortError();
    }
    // A pause, like a reload: the parts S3 holds and the saved upload stay, for the next run.
    if (this.pause?.aborted) return pausedError();
    if (DEAD_UPLOAD_CODES.includes(error?.code)) this.store.delete(this.file);
    return error;
  }
}

/** Return the saved, still open upload of this file (with its parts), or null. */
async function findResumable(client, file, store, signal, onState) {
  const saved = store.get(file);
  // Another account's upload of a file with the same name, size and date: leave it be.
  if (!saved || !mayResume(saved, client.user)) return null;
  onState("checking");
  let status;
  try {
    status = await client.multipartStatus(saved.id, { signal });
  } catch (error) {
    if (["not_found", "invalid_state", "unauthorized"].includes(error.code)) {
      store.delete(file); // Gone, someone else's, or S3 dropped it: start a new one.
      return null;
    }
    throw error;
  }
  if (status.status === "complete" && status.file_size === file.size) {
    store.delete(file);
    return status;
  }
  if (status.status !== "uploading" || status.file_size !== file.size) {
    store.delete(file);
    return null;
  }
  return status;
}
