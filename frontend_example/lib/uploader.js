// Uploads many files: small ones hashed, presigned in batches, sent with one PUT each and
// confirmed in one call per batch; big ones as multipart uploads (multipart.js). No DOM
// here: progress and states arrive through callbacks, for the page and <S3Uploader> alike.
//
//   const results = await new Uploader(client, { onState, onProgress }).upload(fileList);
import { Limiter, anySignal, chunks, runLimited } from "./concurrency.js";
import { ApiError, abortError, describeError, toApiError } from "./errors.js";
import { joinPath, parentOf } from "./folders.js";
import { HASH_CONCURRENCY, createHasher } from "./hash.js";
import { precheck, profileLimits } from "./limits.js";
import { DEFAULT_PART_CONCURRENCY, SIGN_BATCH, uploadMultipart } from "./multipart.js";
import { ResumeStore, mayResume } from "./resume-store.js";
import { DEFAULT_RETRY, sleep } from "./retry.js";
import { sendWithRetries } from "./storage.js";

export const DEFAULT_FILE_CONCURRENCY = 3;
const PAUSED = Symbol("paused"); // what one try of a paused file returns

/** Return the folder of a relative path ("photos/2026/a.jpg" → "photos/2026"), under base. */
export function folderOf(relativePath, base = "") {
  return joinPath(base, parentOf(relativePath));
}

/** Return how many results are complete, failed and cancelled, and the bytes resumed uploads carried over. */
export function countResults(results) {
  const count = (status) => results.filter((result) => result.status === status).length;
  const resumedBytes = results.reduce((sum, result) => sum + (result.resumedBytes || 0), 0);
  return { complete: count("complete"), failed: count("failed"), cancelled: count("cancelled"), resumedBytes };
}

function normalizeItem(item) {
  if (item && typeof item === "object" && "file" in item && !(item instanceof Blob)) return { ...item };
  const file = item;
  return { file, folder: folderOf(file.webkitRelativePath || file.relativePath || "") };
}

/**
 * Uploads many files; small ones are confirmed in one batch, big ones go multipart.
 *
 * Options:
 *   fileConcurrency (files at once), partConcurrency (parts at once, per big file),
 *   signal (cancels everything), extra (FileSpec fields for every file), retry, wait,
 *   hasher (hash(blob) → base64 SHA-256, or null for none), store (ResumeStore),
 *   limits (GET /api/files/limits, asked when not given), usage (GET /api/files/usage, asked
 *   when not given; null: unknown) — files they refuse fail before any hashing,
 *   profile (an upload profile's name, sent as `profile` in every FileSpec; files are checked
 *     against its effective limits; also taken from extra.profile),
 *   onState(index, state, detail): queued | hashing | signing | checking | uploading |
 *     resuming | retrying | paused | confirming | completing | complete | failed | cancelled
 *   onProgress(index, loaded, total), onTotalProgress(loaded, total).
 *
 * pause(index) and resume(index) (or pauseAll(), resumeAll()) while upload() runs: a paused
 * multipart upload stops sending parts and keeps those S3 holds; a paused PUT is aborted and
 * sent again from the start on resume. upload() resolves once every file is settled.
 */
export class Uploader {
  constructor(client, options = {}) {
    const {
      fileConcurrency = DEFAULT_FILE_CONCURRENCY,
      partConcurrency = DEFAULT_PART_CONCURRENCY,
      signal = null,
      extra = {},
      retry = DEFAULT_RETRY,
      wait = sleep,
      store = new ResumeStore(),
      signBatch = SIGN_BATCH,
      limits = null,
      usage = undefined,
      profile = extra.profile ?? null,
      onState = () => {},
      onProgress = () => {},
      onTotalProgress = () => {},
    } = options;
    Object.assign(this, { client, fileConcurrency, partConcurrency, signal, extra, retry, wait, store, signBatch });
    Object.assign(this, { limits, usage, profile, onState, onProgress, onTotalProgress });
    this.hasher = "hasher" in options ? options.hasher : createHasher();
    this.running = false;
  }

  /**
   * Upload items: File objects, or {file, folder?, signal?, title?, tags?, tier?} (signal
   * cancels one file). Resolves with one result per item, in order:
   *   {file, status: "complete"|"failed"|"cancelled", id?, multipart?, resumedBytes?, error?: {code, message}}
   */
  async upload(items) {
    // The indexes given to the callbacks are positions in items: one batch at a time.
    if (this.running) throw new Error("This Uploader is already uploading; wait for it, or make another.");
    this.running = true;
    try {
      this._start(items);
      this.entries.forEach((_, index) => this.onState(index, "queued"));
      const [server, usage] = await Promise.all([this.limits || this.client.limits(), this._usage()]);
      const limits = profileLimits(server, this.profile); // the server's own, narrowed by the profile
      this.serverLimits = limits;
      const big = [];
      const small = [];
      for (const index of this._allowed(limits, usage)) {
        (this.entries[index].file.size > limits.multipart_threshold ? big : small).push(index);
      }
      const jobs = big.map((index) => this._sendBig(index));
      jobs.push(this._sendSmall(small, limits.max_batch));
      await Promise.all(jobs);
      return this.results;
    } finally {
      this.running = false;
    }
  }

  /** Set up the batch: its entries, results, cancel signals and byte counts. */
  _start(items) {
    this.entries = Array.from(items, normalizeItem);
    this.results = this.entries.map(({ file }) => ({ file, status: "pending" }));
    this.signals = this.entries.map((entry) => anySignal([this.signal, entry.signal]));
    this.loaded = this.entries.map(() => 0);
    this.totalBytes = this.entries.reduce((sum, { file }) => sum + file.size, 0);
    this.fileSlots = new Limiter(this.fileConcurrency);
    // Per file: the signal a pause aborts (one per try), and a promise while paused.
    this.pauses = this.entries.map(() => ({ controller: new AbortController(), waiting: null }));
  }

  // -- pause and resume ---------------------------------------------------------------------

  /** Pause file index (still uploading); return whether it was paused now. */
  pause(index) {
    const pause = this.pauses?.[index];
    if (!pause || pause.waiting || this.results[index].status !== "pending") return false;
    let resume;
    pause.waiting = { promise: new Promise((resolve) => (resume = resolve)), resume };
    pause.controller.abort();
    this.onState(index, "paused");
    return true;
  }

  /** Resume paused file index; return whether it was paused. */
  resume(index) {
    const pause = this.pauses?.[index];
    if (!pause?.waiting) return false;
    const { resume } = pause.waiting;
    pause.controller = new AbortController();
    pause.waiting = null;
    resume();
    return true;
  }

  /** Pause every file still uploading; return how many were paused. */
  pauseAll() {
    return (this.pauses || []).filter((_, index) => this.pause(index)).length;
  }

  /** Resume every paused file; return how many. */
  resumeAll() {
    return (this.pauses || []).filter((_, index) => this.resume(index)).length;
  }

  /** Tell whether file index is paused. */
  isPaused(index) {
    return Boolean(this.pauses?.[index]?.waiting);
  }

  /**
   * Run attempt(pauseSignal) for file index in a file slot, and again once resumed each time it
   * returns PAUSED; a paused file waits outside the slots. Resolve true once an attempt ran to
   * its end, false when the file was cancelled while paused.
   */
  async _pausable(index, attempt) {
    for (;;) {
      if (!(await this._whilePaused(index))) return false;
      const outcome = await this.fileSlots.run(() =>
        this.isPaused(index) ? PAUSED : attempt(this.pauses[index].controller.signal),
      );
      if (outcome !== PAUSED) return true;
    }
  }

  /** Wait while file index is paused; resolve false if it is cancelled meanwhile. */
  _whilePaused(index) {
    const { waiting } = this.pauses[index];
    if (!waiting) return Promise.resolve(true);
    this.onState(index, "paused");
    const signal = this.signals[index];
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      waiting.promise.then(() => resolve(true));
      signal?.addEventListener("abort", () => resolve(false), { once: true });
    });
  }

  /** Tell whether error stopped file index because of pause (its try's pause signal), not a cancel or a failure. */
  _pausedBy(index, error, pause) {
    // The try's own signal: a quick resume may already have unpaused the file.
    return pause.aborted && !this.signals[index]?.aborted && ["paused", "aborted"].includes(error?.code);
  }

  /** Return the user's usage, or null when it cannot be read (the server checks the quota anyway). */
  async _usage() {
    if (this.usage !== undefined) return this.usage;
    try {
      return await this.client.usage();
    } catch {
      return null;
    }
  }

  /**
   * Fail at once, before any hashing, the files the limits already refuse (too big, a refused type,
   * beyond the quota); return the indexes of the others.
   */
  _allowed(limits, usage) {
    const files = this.entries.map((entry) => entry.file);
    // An interrupted upload's bytes are reserved already: resuming it takes no more of the quota.
    const reserved = (file) => {
      const saved = this.store.get(file);
      return Boolean(saved) && mayResume(saved, this.client.user);
    };
    const problems = precheck(files, limits, usage, { reserved });
    problems.forEach((problem, index) => problem && this._fail(index, problem));
    return files.map((_, index) => index).filter((index) => !problems[index]);
  }

  // -- reporting --------------------------------------------------------------------------

  _progress(index, bytes) {
    this.loaded[index] = bytes;
    this.onProgress(index, bytes, this.entries[index].file.size);
    this.onTotalProgress(this.loaded.reduce((a, b) => a + b, 0), this.totalBytes);
  }

  _settle(index, status, fields = {}) {
    this.results[index] = { ...this.results[index], ...fields, status };
    if (this.pauses?.[index]) this.pauses[index].waiting = null; // settled: nothing left to resume
    this.onState(index, status, fields.error);
  }

  _fail(index, error) {
    const failure = toApiError(error);
    if (failure.code === "aborted") {
      this._settle(index, "cancelled", { error: { code: "aborted", message: failure.message } });
    } else {
      this._settle(index, "failed", { error: { code: failure.code, message: describeError(failure) } });
    }
  }

  /** Return onRetry(error, attempt, delay) for file index: it shows as the state "retrying". */
  _retrying(index) {
    return (error, attempt, delay) => this.onState(index, "retrying", { error, attempt, delay });
  }

  /** Return the FileSpec of entry: extra, the entry's own fields, its folder, and the file's name, type, size. */
  _specOf({ file, signal: _signal, folder, ...fields }) {
    const { extra, profile } = this;
    return {
      ...extra,
      ...(profile ? { profile } : {}),
      ...fields,
      ...(folder || extra.folder ? { folder: folder || extra.folder } : {}),
      file_name: file.name,
      content_type: file.type || "application/octet-stream",
      file_size: file.size,
    };
  }

  // -- big files ----------------------------------------------------------------------------

  /** Upload file index as a multipart upload (created: the ticket, when the server made one). */
  async _sendBig(index, created = null) {
    let ticket = created;
    const went = await this._pausable(index, async (pause) => {
      const outcome = await this._sendBigOnce(index, ticket, pause);
      ticket = null; // saved in the store: after a pause, the next try resumes it from S3's parts
      return outcome;
    });
    if (!went) await this._dropPaused(index);
  }

  /** Abort the multipart upload of a file cancelled while paused: S3 drops its parts. */
  async _dropPaused(index) {
    const { file } = this.entries[index];
    const saved = this.store.get(file);
    if (saved) {
      this.store.delete(file);
      await this.client.abortMultipart(saved.id).catch(() => {});
    }
    this._fail(index, abortError());
  }

  /** One try of file index's multipart upload; return PAUSED if a pause stopped it. */
  async _sendBigOnce(index, created, pause) {
    const { file } = this.entries[index];
    if (this.signals[index]?.aborted) return this._fail(index, abortError());
    try {
      const outcome = await uploadMultipart(this.client, file, {
        spec: this._specOf(this.entries[index]),
        created,
        pause,
        defaultPartSize: this.serverLimits?.default_part_size,
        store: this.store,
        partConcurrency: this.partConcurrency,
        signal: this.signals[index],
        retry: this.retry,
        wait: this.wait,
        signBatch: this.signBatch,
        onState: (state, detail) => this.onState(index, state, detail),
        onProgress: (bytes) => this._progress(index, bytes),
        onRetry: this._retrying(index),
      });
      this._settle(index, "complete", { id: outcome.id, multipart: true, resumedBytes: outcome.resumedBytes });
    } catch (error) {
      if (this._pausedBy(index, error, pause)) return PAUSED;
      this._fail(index, error);
    }
  }

  // -- small files --------------------------------------------------------------------------

  /** Hash, presign, send and confirm the small files, maxBatch files a request. */
  async _sendSmall(indexes, maxBatch) {
    const specs = await this._describe(indexes);
    const tickets = [];
    for (const batch of chunks(specs, maxBatch)) tickets.push(...(await this._presign(batch)));
    const uploaded = await this._sendTickets(tickets);
    for (const batch of chunks(uploaded.sort((a, b) => a - b), maxBatch)) await this._confirm(batch);
  }

  /** Return [{index, spec}] in index order, each spec with its SHA-256 (hashed off the main thread). */
  async _describe(indexes) {
    const specs = [];
    await runLimited(indexes, HASH_CONCURRENCY, async (index) => {
      const spec = this._specOf(this.entries[index]);
      if (this.signals[index]?.aborted) return this._fail(index, abortError());
      if (this.hasher) {
        this.onState(index, "hashing");
        try {
          spec.checksum_sha256 = await this.hasher(this.entries[index].file);
        } catch (error) {
          return this._fail(index, new ApiError(0, "read_error", `Cannot read the file: ${error.message}`));
        }
      }
      specs.push({ index, spec });
    });
    return specs.sort((a, b) => a.index - b.index);
  }

  /** Presign one batch; return [{index, spec, ticket}] of the files the server accepted. */
  async _presign(batch) {
    for (const { index } of batch) this.onState(index, "signing");
    let answer;
    try {
      answer = await this.client.presign(batch.map((entry) => entry.spec), { signal: this.signal });
    } catch (error) {
      for (const { index } of batch) this._fail(index, error);
      return [];
    }
    // Tickets come back in request order, skipping the entries listed under "failed".
    const failedPositions = new Set(answer.failed.map((failure) => failure.index));
    for (const failure of answer.failed) this._fail(batch[failure.index].index, failure.error);
    const accepted = batch.filter((_, position) => !failedPositions.has(position));
    return accepted.map((entry, position) => ({ ...entry, ticket: answer.successful[position] }));
  }

  /** Send the bytes straight to storage, a few files at a time; return the indexes sent. */
  async _sendTickets(tickets) {
    const uploaded = [];
    const sends = tickets.map(({ index, spec, ticket }) => {
      if (ticket.multipart) return this._sendBig(index, ticket); // The server's threshold is lower.
      this.results[index] = { ...this.results[index], id: ticket.id };
      let current = ticket;
      return this._pausable(index, async (pause) => {
        try {
          current = await this._sendSmallFile(index, spec, current, pause);
          this.results[index] = { ...this.results[index], id: current.id };
          uploaded.push(index);
        } catch (error) {
          if (this._pausedBy(index, error, pause)) return PAUSED; // sent again from the start on resume
          this._fail(index, error);
        }
      }).then((went) => went || this._fail(index, abortError()));
    });
    await Promise.all(sends);
    return uploaded;
  }

  /** PUT one small file, with retries (pause stops it); after a 403 (expired URL) presign it again. */
  async _sendSmallFile(index, spec, ticket, pause = null) {
    let current = ticket;
    const signal = anySignal([this.signals[index], pause]);
    this.onState(index, "uploading");
    await sendWithRetries(this.entries[index].file, {
      target: () => current,
      renew: async (error, attempt) => {
        // No route re-signs a single upload: a new ticket replaces it, and the old
        // pending record expires on its own (the sweeper releases its reservation).
        this._retrying(index)(error, attempt, 0);
        const answer = await this.client.presign([spec], { signal });
        if (answer.failed.length) throw answer.failed[0].error;
        current = answer.successful[0];
      },
      signal,
      retry: this.retry,
      wait: this.wait,
      onProgress: (bytes) => this._progress(index, bytes),
      onRetry: this._retrying(index),
    });
    return current;
  }

  /** Confirm one batch in one call: the server checks S3 for all of its files. */
  async _confirm(batch) {
    for (const index of batch) this.onState(index, "confirming");
    let answer;
    try {
      answer = await this.client.confirm(batch.map((index) => this.results[index].id));
    } catch (error) {
      for (const index of batch) this._fail(index, error);
      return;
    }
    const byId = new Map(answer.results.map((item) => [item.id, item]));
    for (const index of batch) {
      const item = byId.get(this.results[index].id);
      if (item?.status === "success") this._settle(index, "complete", { id: item.id });
      else this._fail(index, { code: item?.status || "error", message: item?.message || "Not confirmed." });
    }
  }
}
