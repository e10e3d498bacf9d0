// s3drive browser client: API calls and direct-to-S3 uploads. No DOM code here (a drop is read
// from its DataTransfer; no element is touched), so other pages (or the React component in
// react/) can reuse it; progress and state arrive through callbacks.
//
//   const api = new S3DriveClient();            // same origin as the page
//   await api.login("demo", "secret");
//   const results = await uploadFiles(api, fileList, { onProgress, onState });
//
// What it does for you:
// - small files (up to the server's multipart_threshold): SHA-256 in a Web Worker,
//   presigned in batches, one PUT each, then one batch confirm;
// - big files: multipart, several parts at once, resumable after a page reload (the
//   upload id is kept in localStorage; the parts S3 holds are read back from the API);
// - retries with exponential backoff on network errors, 5xx and 429; a fresh URL when
//   S3 answers 403 because a presigned URL expired; cancel (aborts multipart uploads).

export const DEFAULT_FILE_CONCURRENCY = 3;
export const DEFAULT_PART_CONCURRENCY = 4;
export const HASH_CONCURRENCY = 2;
export const SIGN_BATCH = 50; // part URLs per sign call: few calls, yet URLs fresh when used
export const MAX_RESIGNS = 2; // fresh URLs per part or file after S3 answered 403
export const RESUME_PREFIX = "s3drive.multipart:";
export const DEFAULT_RETRY = Object.freeze({ retries: 5, baseDelay: 500, maxDelay: 20_000 });

// -- errors ------------------------------------------------------------------------------

/** An error answer of the API ({"error": {"code", "message", "details"}}), of S3, or of the client. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}, { retryAfter = null, requestId = null, source = "api" } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details || {};
    this.retryAfter = retryAfter; // seconds, from Retry-After
    this.requestId = requestId; // X-Request-ID, for reports of internal errors
    this.source = source; // "api" | "storage" | "client"
  }
}

/** Return a cancellation error (what every cancelled step rejects with). */
export function abortError() {
  return new ApiError(0, "aborted", "The upload was cancelled.", {}, { source: "client" });
}

// What each code means for the person in front of the page, and what they can do.
// Server messages are specific sentences ("The file is 6 GiB; the limit is 5 GiB."),
// so they are shown when present; the hint says what to do next.
export const ERROR_HELP = Object.freeze({
  // API.md codes
  bad_request: { title: "The request was malformed.", hint: "Reload the page and try again." },
  unauthorized: { title: "Not signed in, or wrong username or password.", hint: "Check your details and sign in." },
  token_expired: { title: "Your session has expired.", hint: "Sign in again." },
  token_revoked: { title: "You were signed out.", hint: "Sign in again." },
  invalid_token: { title: "Your session is not valid.", hint: "Sign in again." },
  forbidden: { title: "You are not allowed to do that.", hint: "" },
  registration_closed: {
    title: "This server does not accept new accounts.",
    hint: "Ask an administrator to create one for you.",
  },
  not_found: { title: "Not found.", hint: "It may have been deleted; reload the list." },
  conflict: { title: "That conflicts with the file's current state.", hint: "Reload and try again." },
  object_missing: {
    title: "The upload has not reached storage.",
    hint: "Upload the file again.",
  },
  username_taken: { title: "That username is taken.", hint: "Choose another one, or sign in." },
  invalid_state: { title: "Not possible in the file's current state.", hint: "Reload the list and try again." },
  file_too_large: { title: "The file is larger than the server allows.", hint: "" },
  batch_too_large: { title: "Too many files in one request.", hint: "Upload fewer files at a time." },
  content_type_not_allowed: { title: "This type of file is not allowed.", hint: "" },
  validation_error: { title: "Some values are not valid.", hint: "" },
  integrity_mismatch: {
    title: "What reached storage differs from the file that was declared; it was rejected.",
    hint: "Upload the file again.",
  },
  rate_limited: { title: "Too many requests.", hint: "Wait a moment and try again." },
  storage_unavailable: { title: "Storage is not answering.", hint: "Try again in a few seconds." },
  database_unavailable: { title: "The server's database is not answering.", hint: "Try again in a few seconds." },
  quota_exceeded: {
    title: "Not enough space left in your quota.",
    hint: "Delete some files, or ask an administrator for more space.",
  },
  internal_error: { title: "The server hit an unexpected error.", hint: "Try again; if it keeps failing, report it." },
  // Client-side and storage conditions
  network_error: { title: "Cannot reach the server.", hint: "Check your connection and try again." },
  aborted: { title: "Cancelled.", hint: "" },
  read_error: { title: "The file could not be read.", hint: "Pick it again; it may have moved or changed." },
  storage_error: { title: "Storage refused the upload.", hint: "Try again." },
  AccessDenied: { title: "Storage refused the upload link (it may have expired).", hint: "Try again." },
  SignatureDoesNotMatch: {
    title: "Storage refused the upload: the file changed since it was picked.",
    hint: "Pick it again.",
  },
  RequestTimeTooSkewed: { title: "Your computer's clock is wrong.", hint: "Correct the clock, then try again." },
  // Per-file results of a batch confirm
  missing: { title: "The upload did not reach storage.", hint: "Upload the file again." },
  mismatch: {
    title: "What reached storage differs from the file; it was rejected.",
    hint: "Upload the file again.",
  },
  error: { title: "The server could not confirm the upload.", hint: "Try again." },
});

/** Return one sentence (or two) for people, saying what went wrong and what to do. */
export function describeError(error) {
  const { code, message, details = {}, retryAfter = null, requestId = null } = toApiError(error);
  const help = ERROR_HELP[code];
  let text = message || help?.title || "Something went wrong.";
  if (code === "internal_error" || code === "http_error") text = help?.title || text;
  if (code === "validation_error") {
    const fields = flattenDetails(details);
    if (fields.length) text = `${text.replace(/\.$/, "")}: ${fields.join("; ")}`.replace(/([^.!?])$/, "$1.");
  }
  const parts = [text];
  if (help?.hint && !text.includes(help.hint)) parts.push(help.hint);
  if (retryAfter && (code === "rate_limited" || code.endsWith("_unavailable"))) {
    parts.push(`(Retry after ${retryAfter} s.)`);
  }
  if (requestId && code === "internal_error") parts.push(`Request id: ${requestId}.`);
  return parts.join(" ");
}

function flattenDetails(details, prefix = "") {
  const out = [];
  for (const [field, value] of Object.entries(details || {})) {
    const name = prefix ? `${prefix}.${field}` : field;
    if (Array.isArray(value)) out.push(`${name}: ${value.join(" ")}`);
    else if (value && typeof value === "object") out.push(...flattenDetails(value, name));
    else if (value !== undefined) out.push(`${name}: ${value}`);
  }
  return out;
}

/** Return error as an ApiError (a batch's per-file {code, message}, or any thrown value). */
export function toApiError(error) {
  if (error instanceof ApiError) return error;
  if (error && typeof error.code === "string") {
    return new ApiError(error.status || 0, error.code, error.message || error.code, error.details || {});
  }
  return new ApiError(0, "client_error", String(error?.message || error), {}, { source: "client" });
}

function retryAfterSeconds(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** Return an ApiError built from a fetch Response whose status is not 2xx. */
async function errorFromResponse(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's HTML page, say): fall back to the status line.
  }
  const error = body && typeof body.error === "object" && body.error !== null ? body.error : null;
  return new ApiError(
    response.status,
    error?.code || "http_error",
    error?.message || `HTTP ${response.status} ${response.statusText || ""}`.trim(),
    error?.details || {},
    {
      retryAfter: retryAfterSeconds(response.headers?.get?.("Retry-After")),
      requestId: response.headers?.get?.("X-Request-ID") || null,
    },
  );
}

// -- retries -----------------------------------------------------------------------------

/** Return the delay before retry number attempt+1: exponential, capped, with jitter. */
export function backoffDelay(attempt, { baseDelay, maxDelay } = DEFAULT_RETRY, random = Math.random) {
  const ceiling = Math.min(maxDelay, baseDelay * 2 ** attempt);
  // "Equal jitter": at least half the step, so retries back off, spread so clients don't retry in step.
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Tell whether trying again may succeed: network errors, 5xx, 429, S3's request timeouts. */
export function isRetryable(error) {
  if (!(error instanceof ApiError) || error.code === "aborted") return false;
  if (error.status === 0) return error.code === "network_error";
  return error.status >= 500 || error.status === 429 || error.code === "RequestTimeout";
}

/**
 * Tell whether S3 refused a presigned URL because it expired: sign a new one.
 * (AWS answers 403 AccessDenied "Request has expired"; a bad signature, from a file
 * that changed after it was picked, would fail again and is not retried.)
 */
export function isRefusedUrl(error) {
  return (
    error instanceof ApiError &&
    error.source === "storage" &&
    error.status === 403 &&
    (/expired/i.test(error.message) || ["AccessDenied", "ExpiredToken", "storage_error"].includes(error.code))
  );
}

/** Wait ms milliseconds, or reject with an abort error as soon as signal aborts. */
export function sleep(ms, signal = null) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Run operation(attempt) until it succeeds, retrying retryable errors with backoff.
 * Honours Retry-After. onRetry(error, attempt, delayMs) is told before each wait.
 */
export async function withRetries(
  operation,
  {
    retry = DEFAULT_RETRY,
    signal = null,
    onRetry = () => {},
    wait = sleep,
    random = Math.random,
    retryIf = isRetryable,
  } = {},
) {
  for (let attempt = 0; ; attempt += 1) {
    if (signal?.aborted) throw abortError();
    try {
      return await operation(attempt);
    } catch (error) {
      if (signal?.aborted) throw abortError();
      if (attempt >= retry.retries || !retryIf(error)) throw error;
      const delay =
        error.retryAfter != null
          ? Math.min(retry.maxDelay, error.retryAfter * 1000)
          : backoffDelay(attempt, retry, random);
      onRetry(error, attempt + 1, delay);
      await wait(delay, signal);
    }
  }
}

/** Return a signal that aborts when any of the given ones does (null entries are skipped). */
export function anySignal(signals) {
  const live = signals.filter(Boolean);
  if (live.length <= 1) return live[0] || null;
  const controller = new AbortController();
  for (const signal of live) {
    if (signal.aborted) {
      controller.abort();
      break;
    }
    signal.addEventListener("abort", () => controller.abort(), { once: true });
  }
  return controller.signal;
}

/** A counting semaphore: run(fn) waits for a free slot, so at most `limit` fns run at once. */
export class Limiter {
  constructor(limit) {
    this.limit = Math.max(1, limit | 0);
    this.active = 0;
    this.queue = [];
  }

  async run(fn) {
    if (this.active >= this.limit) await new Promise((resolve) => this.queue.push(resolve));
    this.active += 1;
    try {
      return await fn();
    } finally {
      this.active -= 1;
      this.queue.shift()?.();
    }
  }
}

/** Run worker(item, index) over items with at most `limit` running at once. */
export async function runLimited(items, limit, worker) {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const index = next++;
      await worker(items[index], index);
    }
  });
  await Promise.all(lanes);
}

// -- the API -----------------------------------------------------------------------------

const TOKENS_KEY = "s3drive.tokens";

/** Calls the s3drive API with a bearer token, refreshing it once when it expired. */
export class S3DriveClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] API origin, "" for the page's own.
   * @param {Storage|null} [options.storage] where tokens survive a reload (sessionStorage by default).
   * @param {object} [options.retry] {retries, baseDelay, maxDelay} for API calls.
   * @param {Function} [options.wait] sleep(ms, signal) used between retries (tests pass a fast one).
   */
  constructor({ baseUrl = "", storage = globalThis.sessionStorage ?? null, retry = DEFAULT_RETRY, wait = sleep } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.storage = storage;
    this.retry = retry;
    this.wait = wait;
    this.onSignedOut = () => {}; // set by apps: called when the server ends the session
    this.tokens = this._loadTokens();
    this.user = null; // set by me()
    this._refreshing = null;
  }

  get signedIn() {
    return Boolean(this.tokens?.access_token);
  }

  _loadTokens() {
    try {
      return JSON.parse(this.storage?.getItem(TOKENS_KEY) || "null");
    } catch {
      return null;
    }
  }

  _saveTokens(tokens) {
    this.tokens = tokens;
    if (!tokens) this.user = null;
    if (!this.storage) return;
    if (tokens) this.storage.setItem(TOKENS_KEY, JSON.stringify(tokens));
    else this.storage.removeItem(TOKENS_KEY);
  }

  /**
   * Send one JSON request; return the parsed body or throw ApiError.
   *
   * 429 and 503 are retried for every call (the server did nothing and says when to
   * come back); network errors and other 5xx only for idempotent calls, where a
   * repeat cannot do the work twice.
   */
  async request(
    method,
    path,
    body = undefined,
    { auth = true, token = null, idempotent = null, retries = null, signal = null } = {},
  ) {
    const safe = idempotent ?? ["GET", "HEAD", "PUT", "DELETE", "PATCH"].includes(method);
    const retry = retries === null ? this.retry : { ...this.retry, retries };
    const retryIf = (error) => isRetryable(error) && (safe || error.status === 429 || error.status === 503);
    return withRetries(() => this._send(method, path, body, { auth, token, signal }), {
      retry,
      retryIf,
      signal,
      wait: this.wait,
    });
  }

  async _send(method, path, body, { auth, token, signal, refreshed = false }) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const bearer = token || (auth ? this.tokens?.access_token : null);
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal || undefined,
      });
    } catch (cause) {
      if (signal?.aborted) throw abortError();
      throw new ApiError(
        0,
        "network_error",
        `Cannot reach the server (${cause?.message || cause}).`,
        {},
        {
          source: "client",
        },
      );
    }
    if (response.ok) return response.status === 204 ? null : response.json();
    const error = await errorFromResponse(response);
    const usesSession = auth && !token;
    if (error.code === "token_expired" && usesSession && !refreshed && this.tokens?.refresh_token) {
      await this.refresh();
      return this._send(method, path, body, { auth, token, signal, refreshed: true });
    }
    if (error.status === 401 && usesSession) this._endSession(error);
    throw error;
  }

  _endSession(error) {
    this._saveTokens(null);
    this.onSignedOut(error);
  }

  /** Create an account; returns the User. */
  async register(username, password) {
    const answer = await this.request(
      "POST",
      "/api/auth/register",
      { username, password },
      { auth: false, retries: 0 },
    );
    return answer.user;
  }

  /** Sign in and keep the tokens (in sessionStorage by default, so a reload stays signed in). */
  async login(username, password) {
    const tokens = await this.request("POST", "/api/auth/login", { username, password }, { auth: false, retries: 0 });
    this._saveTokens({ access_token: tokens.access_token, refresh_token: tokens.refresh_token });
    return tokens;
  }

  /** Swap the refresh token for a new access token; concurrent callers share one refresh. */
  async refresh() {
    if (!this._refreshing) {
      const refreshToken = this.tokens?.refresh_token;
      this._refreshing = this._send("POST", "/api/auth/refresh", undefined, { auth: false, token: refreshToken })
        .then((answer) => this._saveTokens({ ...this.tokens, access_token: answer.access_token }))
        .catch((error) => {
          this._endSession(error);
          throw error;
        })
        .finally(() => {
          this._refreshing = null;
        });
    }
    return this._refreshing;
  }

  /** Revoke both tokens on the server (best effort) and forget them. */
  async logout() {
    const tokens = this.tokens;
    this._saveTokens(null);
    if (!tokens) return;
    for (const token of [tokens.access_token, tokens.refresh_token]) {
      if (!token) continue;
      try {
        await this.request("POST", "/api/auth/logout", undefined, { token, retries: 0 });
      } catch {
        // Expired or already revoked: nothing left to do.
      }
    }
  }

  /** Return the signed-in User, and remember it (resume state is kept per user). */
  async me() {
    this.user = await this.request("GET", "/api/auth/me");
    return this.user;
  }

  usage() {
    return this.request("GET", "/api/files/usage");
  }

  limits() {
    return this.request("GET", "/api/files/limits", undefined, { auth: false });
  }

  /** Presign a batch of FileSpecs; the answer has successful tickets and failed entries. */
  presign(specs, { signal = null } = {}) {
    return this.request("POST", "/api/files/upload/", { files: specs }, { signal });
  }

  /** Confirm uploads by id (idempotent, so retried like a GET). */
  confirm(ids, { signal = null } = {}) {
    return this.request("POST", "/api/files/confirm_uploads/", { ids }, { idempotent: true, signal });
  }

  createMultipart(spec, { signal = null } = {}) {
    return this.request("POST", "/api/files/multipart/", spec, { signal });
  }

  signParts(id, partNumbers, { signal = null } = {}) {
    return this.request(
      "POST",
      `/api/files/multipart/${encodeURIComponent(id)}/sign`,
      { part_numbers: partNumbers },
      {
        idempotent: true,
        signal,
      },
    );
  }

  multipartStatus(id, { signal = null } = {}) {
    return this.request("GET", `/api/files/multipart/${encodeURIComponent(id)}`, undefined, { signal });
  }

  /** Complete a multipart upload from [{part_number, etag}], or let the server list the parts (null). */
  completeMultipart(id, parts = null, { signal = null } = {}) {
    return this.request("POST", `/api/files/multipart/${encodeURIComponent(id)}/complete`, parts ? { parts } : {}, {
      idempotent: true,
      signal,
    });
  }

  abortMultipart(id) {
    return this.request("DELETE", `/api/files/multipart/${encodeURIComponent(id)}`);
  }

  /** List files: {status, folder, q, tag, limit, cursor, sort}; empty values are left out. */
  listFiles(params = {}) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && !(value === "" && name !== "folder")) query.set(name, value);
    }
    const text = query.toString();
    return this.request("GET", `/api/files/${text ? `?${text}` : ""}`);
  }

  getFile(id) {
    return this.request("GET", `/api/files/${encodeURIComponent(id)}`);
  }

  /** Change file_name, title, description, tags or folder; returns the File. */
  updateFile(id, changes) {
    return this.request("PATCH", `/api/files/${encodeURIComponent(id)}`, changes);
  }

  deleteFile(id) {
    return this.request("DELETE", `/api/files/${encodeURIComponent(id)}`);
  }

  /** Return {url, expires_at}: a presigned GET whose Content-Disposition names the file. */
  downloadUrl(id, { disposition = "attachment" } = {}) {
    return this.request("GET", `/api/files/${encodeURIComponent(id)}/download?disposition=${disposition}`);
  }
}

// -- hashing -----------------------------------------------------------------------------

/** Return the base64 of bytes. */
export function base64(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Return the base64 SHA-256 of a Blob on this thread (reads it whole into memory). */
export async function sha256Base64(blob) {
  return base64(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
}

/**
 * Return hash(blob) → base64 SHA-256, computed in Web Workers (hash-worker.js) so the
 * page stays responsive; on this thread where workers are missing (tests, old hosts).
 * Returns null when Web Crypto is unavailable (plain http on a non-local host): the
 * checksum is optional, so such uploads go without one.
 */
export function createHasher({
  workerUrl = new URL("./hash-worker.js", import.meta.url),
  poolSize = HASH_CONCURRENCY,
} = {}) {
  if (!globalThis.crypto?.subtle) return null;
  if (typeof Worker === "undefined") return sha256Base64;
  const idle = [];
  const waiting = [];
  let created = 0;
  let sequence = 0;
  const acquire = () => {
    if (idle.length) return Promise.resolve(idle.pop());
    if (created < poolSize) {
      created += 1;
      return Promise.resolve(new Worker(workerUrl, { type: "module" }));
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = (worker) => {
    const next = waiting.shift();
    if (next) next(worker);
    else idle.push(worker);
  };
  let workersBroken = false;
  return async function hashInWorker(blob) {
    if (workersBroken) return sha256Base64(blob);
    let worker;
    try {
      worker = await acquire();
    } catch {
      workersBroken = true; // new Worker() refused (a CSP, say): hash on this thread
      return sha256Base64(blob);
    }
    try {
      return await new Promise((resolve, reject) => {
        const id = ++sequence;
        worker.onmessage = ({ data }) => {
          if (data.id !== id) return;
          if (data.error) reject(new Error(data.error));
          else resolve(data.digest);
        };
        worker.onerror = (event) => {
          // The worker itself failed (blocked by a CSP, say): hash on this thread from now on.
          event.preventDefault?.();
          workersBroken = true;
          resolve(sha256Base64(blob));
        };
        worker.postMessage({ id, blob });
      });
    } finally {
      release(worker);
    }
  };
}

// -- talking to S3 -----------------------------------------------------------------------

/** Return the S3 error code and message from an XML error body, if there is one. */
export function parseS3Error(text) {
  const pick = (tag) => text?.match(new RegExp(`<${tag}>([^<]*)</${tag}>`))?.[1];
  return { code: pick("Code"), message: pick("Message") };
}

/**
 * Send a blob to storage: PUT to target.url with exactly target.headers, or a form POST
 * with target.fields. XMLHttpRequest because fetch cannot report upload progress.
 * Resolves with {status, etag}; rejects with ApiError (source "storage").
 */
export function sendToStorage(target, blob, { onProgress = () => {}, signal = null } = {}) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const method = target.method || "PUT";
    const xhr = new XMLHttpRequest();
    xhr.open(method, target.url ?? target.presigned_url);
    let body = blob;
    if (method === "POST") {
      body = new FormData();
      for (const [name, value] of Object.entries(target.fields || {})) body.append(name, value);
      body.append("file", blob); // S3 ignores form fields after the file.
    } else {
      for (const [name, value] of Object.entries(target.headers || {})) xhr.setRequestHeader(name, value);
    }
    const onAbort = () => xhr.abort();
    const settle = (fn, value) => {
      signal?.removeEventListener("abort", onAbort);
      fn(value);
    };
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(blob.size);
        settle(resolve, { status: xhr.status, etag: xhr.getResponseHeader("ETag") });
        return;
      }
      const s3 = parseS3Error(xhr.responseText);
      const message = `Storage refused the upload: ${s3.message || s3.code || `HTTP ${xhr.status}`}.`;
      settle(
        reject,
        new ApiError(
          xhr.status,
          s3.code || "storage_error",
          message,
          {},
          {
            source: "storage",
            retryAfter: retryAfterSeconds(xhr.getResponseHeader("Retry-After")),
          },
        ),
      );
    };
    // A CORS refusal and a dropped connection look the same to a page: status 0.
    xhr.onerror = () =>
      settle(
        reject,
        new ApiError(
          0,
          "network_error",
          "The connection to storage failed (network or CORS).",
          {},
          {
            source: "storage",
          },
        ),
      );
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => settle(reject, abortError());
    signal?.addEventListener("abort", onAbort, { once: true });
    xhr.send(body);
  });
}

// -- multipart resume state --------------------------------------------------------------

/** Where multipart upload ids wait for the same file to be picked again (localStorage). */
export class ResumeStore {
  constructor(storage = globalThis.localStorage ?? null) {
    this.storage = storage;
  }

  /** Return the key of a file: its name, size and modification time (all a page can see). */
  static key(file) {
    return `${RESUME_PREFIX}${file.name}:${file.size}:${file.lastModified ?? 0}`;
  }

  get(file) {
    return this._read(ResumeStore.key(file));
  }

  set(file, state) {
    try {
      this.storage?.setItem(ResumeStore.key(file), JSON.stringify(state));
    } catch {
      // Storage full or disabled: the upload still runs, it just cannot resume after a reload.
    }
  }

  delete(file) {
    this.storage?.removeItem(ResumeStore.key(file));
  }

  deleteKey(key) {
    this.storage?.removeItem(key);
  }

  /** Return every saved upload: [{key, id, file_name, file_size, part_size, saved_at, …}]. */
  list() {
    if (!this.storage) return [];
    const out = [];
    for (let i = 0; i < this.storage.length; i += 1) {
      const key = this.storage.key(i);
      if (!key?.startsWith(RESUME_PREFIX)) continue;
      const state = this._read(key);
      if (state) out.push({ ...state, key });
    }
    return out;
  }

  _read(key) {
    try {
      const state = JSON.parse(this.storage?.getItem(key) || "null");
      return state && typeof state.id === "string" ? state : null;
    } catch {
      return null;
    }
  }
}

// -- multipart -----------------------------------------------------------------------------

/** Return the byte length of part `number` (1-based) of a file of `size` bytes. */
export function partLength(size, partSize, number) {
  return size ? Math.min(partSize, size - (number - 1) * partSize) : 0;
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

/**
 * Upload one big file as a multipart upload, resuming a saved one for the same file.
 *
 * Options: spec (FileSpec for a new upload), created (a multipart ticket the server
 * already made), store (ResumeStore), partConcurrency, signal, retry, wait, signBatch,
 * onState(state, detail), onProgress(loaded, total), onRetry(error, attempt, delay).
 * Resolves with {id, status: "complete", file, resumedBytes}; rejects with ApiError
 * (code "aborted" after a cancel, which also aborts the upload on the server).
 */
export async function uploadMultipart(
  client,
  file,
  {
    spec,
    created = null,
    store = new ResumeStore(),
    partConcurrency = DEFAULT_PART_CONCURRENCY,
    signal = null,
    retry = DEFAULT_RETRY,
    wait = sleep,
    signBatch = SIGN_BATCH,
    onState = () => {},
    onProgress = () => {},
    onRetry = () => {},
  } = {},
) {
  let upload = created;
  const done = new Map(); // part number -> ETag (or null when S3 did not expose it)
  if (!upload) {
    const resumed = await findResumable(client, file, store, signal, onState);
    if (resumed?.status === "complete") {
      onProgress(file.size, file.size);
      onState("complete");
      return { id: resumed.id, status: "complete", file: null, resumedBytes: file.size };
    }
    if (resumed) {
      upload = resumed;
      for (const part of resumed.parts || []) {
        if (part.size === partLength(file.size, upload.part_size, part.part_number)) {
          done.set(part.part_number, part.etag || null);
        }
      }
    }
  }
  if (!upload) {
    onState("signing");
    // Not cancellable mid-request: the id must come back, so that a cancel can abort it.
    upload = await client.createMultipart(spec);
  }
  store.set(file, {
    id: upload.id,
    upload_id: upload.upload_id,
    file_name: upload.file_name ?? file.name,
    file_size: file.size,
    part_size: upload.part_size,
    folder: spec?.folder ?? null,
    owner: client.user?.id ?? null,
    saved_at: new Date().toISOString(),
  });

  const partCount = upload.part_count || Math.max(1, Math.ceil(file.size / upload.part_size));
  const pending = [];
  for (let n = 1; n <= partCount; n += 1) if (!done.has(n)) pending.push(n);
  let resumedBytes = 0;
  for (const n of done.keys()) resumedBytes += partLength(file.size, upload.part_size, n);
  const inFlight = new Map(); // part number -> bytes sent so far
  let finished = resumedBytes;
  const report = () => {
    let loaded = finished;
    for (const bytes of inFlight.values()) loaded += bytes;
    onProgress(Math.min(loaded, file.size), file.size);
  };
  report();
  onState(resumedBytes ? "resuming" : "uploading", { resumedBytes, parts: partCount, pendingParts: pending.length });

  // When one part fails for good, the others stop too: the upload is reported failed at once.
  const halt = new AbortController();
  const partSignal = anySignal([signal, halt.signal]);
  const signer = new PartSigner(client, upload.id, pending, { batch: signBatch, signal: partSignal });
  try {
    await runLimited(pending, partConcurrency, async (n) => {
      if (partSignal.aborted) throw abortError();
      const start = (n - 1) * upload.part_size;
      const blob = file.slice(start, start + partLength(file.size, upload.part_size, n));
      const etag = await sendPart(signer, n, blob, {
        signal: partSignal,
        retry,
        wait,
        onRetry,
        onProgress: (bytes) => {
          inFlight.set(n, bytes);
          report();
        },
      });
      inFlight.delete(n);
      signer.done(n);
      finished += blob.size;
      done.set(n, etag);
      report();
    });
    onState("completing");
    const etags = [...done.entries()].sort((a, b) => a[0] - b[0]);
    // Without ETags (a bucket whose CORS hides them), the server lists the parts itself.
    const parts = etags.every(([, etag]) => etag) ? etags.map(([n, etag]) => ({ part_number: n, etag })) : null;
    const record = await client.completeMultipart(upload.id, parts, { signal });
    store.delete(file);
    onProgress(file.size, file.size);
    onState("complete");
    return { id: upload.id, status: "complete", file: record, resumedBytes };
  } catch (error) {
    halt.abort();
    if (signal?.aborted) {
      // A cancel, not a reload: give the parts and the quota back.
      store.delete(file);
      await client.abortMultipart(upload.id).catch(() => {});
      throw abortError();
    }
    if (error?.code === "invalid_state" || error?.code === "integrity_mismatch" || error?.code === "not_found") {
      store.delete(file); // The upload cannot go on; a new pick starts afresh.
    }
    throw error;
  }
}

/** Return the saved, still open upload of this file (with its parts), or null. */
async function findResumable(client, file, store, signal, onState) {
  const saved = store.get(file);
  // Another account's upload of a file with the same name, size and date: leave it be.
  if (!saved || (saved.owner && client.user && saved.owner !== client.user.id)) return null;
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

/** PUT one part, retrying with backoff, and with a fresh URL when S3 refuses the old one. */
async function sendPart(signer, n, blob, { signal, retry, wait, onRetry, onProgress }) {
  let resigned = 0;
  const result = await withRetries(
    async () => {
      for (;;) {
        const target = await signer.get(n);
        try {
          return await sendToStorage(target, blob, { signal, onProgress });
        } catch (error) {
          onProgress(0);
          if (!isRefusedUrl(error) || resigned >= MAX_RESIGNS) throw error;
          resigned += 1; // Expired (a long pause, a sleeping laptop): sign again, now.
          signer.invalidate(n);
          onRetry(error, resigned, 0);
        }
      }
    },
    {
      retry,
      signal,
      wait,
      onRetry, // signer.get() signs again if the URL expired while waiting
    },
  );
  return result.etag;
}

// -- many files ----------------------------------------------------------------------------

function chunks(array, size) {
  const out = [];
  for (let i = 0; i < array.length; i += size) out.push(array.slice(i, i + size));
  return out;
}

/** Return the folder of a relative path ("photos/2026/a.jpg" → "photos/2026"), under base. */
export function folderOf(relativePath, base = "") {
  const parts = String(relativePath || "")
    .split("/")
    .slice(0, -1);
  return [...String(base || "").split("/"), ...parts]
    .map((p) => p.trim())
    .filter(Boolean)
    .join("/");
}

function normalizeItem(item) {
  if (item && typeof item === "object" && "file" in item && !(item instanceof Blob)) return { ...item };
  const file = item;
  return { file, folder: folderOf(file.webkitRelativePath || file.relativePath || "") };
}

/**
 * Upload many files; small ones are confirmed in one batch, big ones go multipart.
 *
 * items: File objects, or {file, folder?, signal?, title?, tags?, tier?} (signal cancels
 * one file). Options:
 *   fileConcurrency (files at once), partConcurrency (parts at once, per big file),
 *   signal (cancels everything), extra (FileSpec fields for every file), retry, wait,
 *   hasher (hash(blob) → base64 SHA-256, or null for none), store (ResumeStore), limits,
 *   onState(index, state, detail): queued | hashing | signing | checking | uploading |
 *     resuming | retrying | confirming | completing | complete | failed | cancelled
 *   onProgress(index, loaded, total), onTotalProgress(loaded, total).
 *
 * Returns one result per item, in order:
 *   {file, status: "complete"|"failed"|"cancelled", id?, multipart?, resumedBytes?, error?: {code, message}}
 */
export async function uploadFiles(client, items, options = {}) {
  const {
    fileConcurrency = DEFAULT_FILE_CONCURRENCY,
    partConcurrency = DEFAULT_PART_CONCURRENCY,
    signal = null,
    extra = {},
    retry = DEFAULT_RETRY,
    wait = sleep,
    store = new ResumeStore(),
    signBatch = SIGN_BATCH,
    onState = () => {},
    onProgress = () => {},
    onTotalProgress = () => {},
  } = options;
  const hasher = "hasher" in options ? options.hasher : createHasher();
  const entries = Array.from(items, normalizeItem);
  const results = entries.map(({ file }) => ({ file, status: "pending" }));
  const signals = entries.map((entry) => anySignal([signal, entry.signal]));
  const loaded = entries.map(() => 0);
  const totalBytes = entries.reduce((sum, { file }) => sum + file.size, 0);
  const progress = (index, bytes) => {
    loaded[index] = bytes;
    onProgress(index, bytes, entries[index].file.size);
    onTotalProgress(
      loaded.reduce((a, b) => a + b, 0),
      totalBytes,
    );
  };
  const settle = (index, status, fields = {}) => {
    results[index] = { ...results[index], ...fields, status };
    onState(index, status, fields.error);
  };
  const fail = (index, error) => {
    const failure = toApiError(error);
    if (failure.code === "aborted")
      settle(index, "cancelled", { error: { code: "aborted", message: failure.message } });
    else settle(index, "failed", { error: { code: failure.code, message: describeError(failure) } });
  };
  entries.forEach((_, index) => onState(index, "queued"));
  const limits = options.limits || (await client.limits());
  const fileSlots = new Limiter(fileConcurrency);
  const specOf = ({ file, signal: _signal, folder, ...fields }) => ({
    ...extra,
    ...fields,
    ...(folder || extra.folder ? { folder: folder || extra.folder } : {}),
    file_name: file.name,
    content_type: file.type || "application/octet-stream",
    file_size: file.size,
  });

  const runMultipart = (index, created = null) =>
    fileSlots.run(async () => {
      const { file } = entries[index];
      if (signals[index]?.aborted) return fail(index, abortError());
      try {
        const outcome = await uploadMultipart(client, file, {
          spec: specOf(entries[index]),
          created,
          store,
          partConcurrency,
          signal: signals[index],
          retry,
          wait,
          signBatch,
          onState: (state, detail) => onState(index, state, detail),
          onProgress: (bytes) => progress(index, bytes),
          onRetry: (error, attempt, delay) => onState(index, "retrying", { error, attempt, delay }),
        });
        settle(index, "complete", { id: outcome.id, multipart: true, resumedBytes: outcome.resumedBytes });
      } catch (error) {
        fail(index, error);
      }
    });

  const big = [];
  const small = [];
  entries.forEach(({ file }, index) => (file.size > limits.multipart_threshold ? big : small).push(index));
  const jobs = big.map((index) => runMultipart(index));
  jobs.push(uploadSmallFiles());
  await Promise.all(jobs);
  return results;

  async function uploadSmallFiles() {
    // 1. Describe each file; hash it off the main thread.
    const specs = [];
    await runLimited(small, HASH_CONCURRENCY, async (index) => {
      const spec = specOf(entries[index]);
      if (signals[index]?.aborted) return fail(index, abortError());
      if (hasher) {
        onState(index, "hashing");
        try {
          spec.checksum_sha256 = await hasher(entries[index].file);
        } catch (error) {
          return fail(index, new ApiError(0, "read_error", `Cannot read the file: ${error.message}`));
        }
      }
      specs.push({ index, spec });
    });
    specs.sort((a, b) => a.index - b.index);

    // 2. Presign, at most max_batch files a request. Tickets come back in request
    //    order, skipping the entries listed under "failed".
    const tickets = [];
    for (const batch of chunks(specs, limits.max_batch)) {
      for (const { index } of batch) onState(index, "signing");
      let answer;
      try {
        answer = await client.presign(
          batch.map((entry) => entry.spec),
          { signal },
        );
      } catch (error) {
        for (const { index } of batch) fail(index, error);
        continue;
      }
      const failedPositions = new Set(answer.failed.map((failure) => failure.index));
      for (const failure of answer.failed) fail(batch[failure.index].index, failure.error);
      const accepted = batch.filter((_, position) => !failedPositions.has(position));
      accepted.forEach((entry, position) => tickets.push({ ...entry, ticket: answer.successful[position] }));
    }

    // 3. Send the bytes straight to storage, a few files at a time.
    const uploaded = [];
    const sends = tickets.map(({ index, spec, ticket }) => {
      if (ticket.multipart) return runMultipart(index, ticket); // The server's threshold is lower.
      return fileSlots.run(async () => {
        results[index] = { ...results[index], id: ticket.id };
        try {
          const sent = await sendSmallFile(index, spec, ticket);
          results[index] = { ...results[index], id: sent.id };
          uploaded.push(index);
        } catch (error) {
          fail(index, error);
        }
      });
    });
    await Promise.all(sends);

    // 4. One confirmation call per max_batch files: the server checks S3 for all of them.
    for (const batch of chunks(
      uploaded.sort((a, b) => a - b),
      limits.max_batch,
    )) {
      for (const index of batch) onState(index, "confirming");
      let answer;
      try {
        answer = await client.confirm(batch.map((index) => results[index].id));
      } catch (error) {
        for (const index of batch) fail(index, error);
        continue;
      }
      const byId = new Map(answer.results.map((item) => [item.id, item]));
      for (const index of batch) {
        const item = byId.get(results[index].id);
        if (item?.status === "success") settle(index, "complete", { id: item.id });
        else fail(index, { code: item?.status || "error", message: item?.message || "Not confirmed." });
      }
    }
  }

  /** PUT one small file, with retries; after a 403 (expired URL) presign it again. */
  async function sendSmallFile(index, spec, ticket) {
    let current = ticket;
    let resigned = 0;
    const file = entries[index].file;
    onState(index, "uploading");
    await withRetries(
      async () => {
        for (;;) {
          try {
            return await sendToStorage(current, file, {
              signal: signals[index],
              onProgress: (bytes) => progress(index, bytes),
            });
          } catch (error) {
            progress(index, 0);
            if (!isRefusedUrl(error) || resigned >= MAX_RESIGNS) throw error;
            // No route re-signs a single upload: a new ticket replaces it, and the old
            // pending record expires on its own (the sweeper releases its reservation).
            resigned += 1;
            onState(index, "retrying", { error, attempt: resigned, delay: 0 });
            const answer = await client.presign([spec], { signal: signals[index] });
            if (answer.failed.length) throw answer.failed[0].error;
            current = answer.successful[0];
          }
        }
      },
      {
        retry,
        wait,
        signal: signals[index],
        onRetry: (error, attempt, delay) => onState(index, "retrying", { error, attempt, delay }),
      },
    );
    return current;
  }
}

// -- progress for people -----------------------------------------------------------------

/**
 * Speed and time left of one transfer, from the bytes seen over the last few seconds.
 * update(loaded, total) → {loaded, total, speed (bytes/s, or null), eta (s, or null)}.
 */
export class TransferMeter {
  constructor({ window = 5000, now = () => globalThis.performance?.now?.() ?? Date.now() } = {}) {
    this.window = window;
    this.now = now;
    this.samples = [];
  }

  update(loaded, total) {
    const t = this.now();
    // A retried part sends its bytes again: restart the window rather than show a negative speed.
    if (this.samples.length && loaded < this.samples[this.samples.length - 1][1]) this.samples = [];
    this.samples.push([t, loaded]);
    while (this.samples.length > 2 && t - this.samples[1][0] >= this.window) this.samples.shift();
    const [t0, b0] = this.samples[0];
    const elapsed = (t - t0) / 1000;
    const speed = elapsed >= 0.25 ? (loaded - b0) / elapsed : null;
    const eta = speed > 0 ? Math.max(0, (total - loaded) / speed) : null;
    return { loaded, total, speed, eta };
  }
}

/** Format a byte count for people: 1536 → "1.5 KiB". */
export function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Format seconds for people: 75 → "1 min 15 s". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// -- shared by the page (app.js) and <S3Uploader>: input and wording, no upload logic ----

/** What each upload state reads as. */
export const STATE_LABELS = Object.freeze({
  ready: "Ready",
  queued: "Waiting…",
  hashing: "Computing checksum…",
  signing: "Requesting upload URL…",
  checking: "Looking for the interrupted upload…",
  uploading: "Uploading…",
  resuming: "Resuming…",
  retrying: "Connection trouble, retrying…",
  confirming: "Confirming…",
  completing: "Finishing…",
  complete: "Uploaded",
  cancelled: "Cancelled",
});

/** Return "3.0 MiB of 10.0 MiB · 1.2 MiB/s · 6 s left" for a TransferMeter reading. */
export function rateText({ loaded, total, speed, eta }) {
  const parts = [`${formatBytes(loaded)} of ${formatBytes(total)}`];
  if (speed) parts.push(`${formatBytes(speed)}/s`);
  if (eta != null && loaded < total) parts.push(`${formatDuration(eta)} left`);
  return parts.join(" · ");
}

/** Return [{file, relativePath}] for dropped files and, walked recursively, dropped folders. */
export async function droppedItems(dataTransfer) {
  const entries = Array.from(dataTransfer?.items || [])
    .filter((item) => item.kind === "file")
    .map((item) => item.webkitGetAsEntry?.());
  if (!entries.length || entries.some((entry) => !entry)) {
    // No entry API (or a non-file item): take the flat file list.
    return Array.from(dataTransfer?.files || [], (file) => ({ file, relativePath: "" }));
  }
  const out = [];
  for (const entry of entries) await walkEntry(entry, out);
  return out;
}

async function walkEntry(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    // fullPath is "/folder/sub/name"; a file dropped on its own has no folder.
    const relativePath = entry.fullPath.replace(/^\//, "");
    out.push({ file, relativePath: relativePath.includes("/") ? relativePath : "" });
    return;
  }
  const reader = entry.createReader();
  // readEntries returns at most ~100 entries a call: read until it returns none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walkEntry(child, out);
  }
}
