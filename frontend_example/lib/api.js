// The s3drive JSON API: a fetch wrapper that sends the bearer token, refreshes it once
// when it expired, turns the error envelope {"error": {code, message, details}} into
// ApiError, and retries what is safe to retry.
import { ApiError, abortError, retryAfterSeconds } from "./errors.js";
import { DEFAULT_RETRY, isRetryable, sleep, withRetries } from "./retry.js";

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

  /** Tell whether there is a session (tokens kept from a sign-in). */
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
    const bearer = token || (auth ? this.tokens?.access_token : null);
    const response = await this._fetch(method, path, body, bearer, signal);
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

  /** Fetch once; a failure to connect becomes a network_error (retryable), a cancel an abort error. */
  async _fetch(method, path, body, bearer, signal) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    try {
      return await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal || undefined,
      });
    } catch (cause) {
      if (signal?.aborted) throw abortError();
      const message = `Cannot reach the server (${cause?.message || cause}).`;
      throw new ApiError(0, "network_error", message, {}, { source: "client" });
    }
  }

  _endSession(error) {
    this._saveTokens(null);
    this.onSignedOut(error);
  }

  /** Create an account; returns the User. */
  async register(username, password) {
    const credentials = { username, password };
    const answer = await this.request("POST", "/api/auth/register", credentials, { auth: false, retries: 0 });
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

  /** Return the account's quota, bytes used and reserved, and file count. */
  usage() {
    return this.request("GET", "/api/files/usage");
  }

  /** Return the server's upload limits (max_batch, multipart_threshold, …); needs no sign-in. */
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

  /** Start a multipart upload for a FileSpec; returns its ticket (id, upload_id, part_size, …). */
  createMultipart(spec, { signal = null } = {}) {
    return this.request("POST", "/api/files/multipart/", spec, { signal });
  }

  /** Return {parts: [{part_number, url, headers}], expires_at} for the given part numbers. */
  signParts(id, partNumbers, { signal = null } = {}) {
    const body = { part_numbers: partNumbers };
    return this.request("POST", multipartPath(id, "/sign"), body, { idempotent: true, signal });
  }

  /** Return a multipart upload's state and the parts S3 already holds. */
  multipartStatus(id, { signal = null } = {}) {
    return this.request("GET", multipartPath(id), undefined, { signal });
  }

  /** Complete a multipart upload from [{part_number, etag}], or let the server list the parts (null). */
  completeMultipart(id, parts = null, { signal = null } = {}) {
    const body = parts ? { parts } : {};
    return this.request("POST", multipartPath(id, "/complete"), body, { idempotent: true, signal });
  }

  /** Abort a multipart upload: S3 drops its parts and the quota reservation is released. */
  abortMultipart(id) {
    return this.request("DELETE", multipartPath(id));
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

  /** Return one File. */
  getFile(id) {
    return this.request("GET", filePath(id));
  }

  /** Change file_name, title, description, tags or folder; returns the File. */
  updateFile(id, changes) {
    return this.request("PATCH", filePath(id), changes);
  }

  /** Delete a file: its object leaves S3 and its bytes leave the quota. */
  deleteFile(id) {
    return this.request("DELETE", filePath(id));
  }

  /** Return {url, expires_at}: a presigned GET whose Content-Disposition names the file ("inline" to show it). */
  downloadUrl(id, { disposition = "attachment" } = {}) {
    return this.request("GET", `${filePath(id)}/download?disposition=${disposition}`);
  }

  /** Delete many files: {deleted: [ids], failed: [{id, error}]}; repeating it deletes nothing twice. */
  deleteFiles(ids) {
    return this.request("POST", "/api/files/delete", { ids }, { idempotent: true });
  }

  /** Move many files into folder ("" is the top): {folder, moved, failed: [{id, error}]}. */
  moveFiles(ids, folder) {
    return this.request("POST", "/api/files/move", { ids, folder }, { idempotent: true });
  }

  // -- folders ------------------------------------------------------------------------------

  /** Make a folder (kept while empty); returns {path}. An existing one is fine (200). */
  createFolder(path) {
    return this.request("POST", "/api/folders", { path }, { idempotent: true });
  }

  /** Rename or move a folder with all it holds to newPath (into an existing one, the two merge). */
  moveFolder(path, newPath) {
    return this.request("PATCH", folderPath(path), { new_path: newPath });
  }

  /** Delete an empty folder; a folder with files answers 409 conflict (details.file_count). */
  deleteFolder(path) {
    return this.request("DELETE", folderPath(path));
  }

  // -- share links --------------------------------------------------------------------------

  /** Make a public link to a file: body {expires_in?, max_downloads?, password?}; returns the Share. */
  createShare(fileId, body) {
    return this.request("POST", `${filePath(fileId)}/shares`, body);
  }

  /** Return {items: [Share], next_cursor}: the caller's links, those of one file with fileId. */
  listShares({ fileId = null, cursor = null, limit = null } = {}) {
    const query = new URLSearchParams();
    if (fileId) query.set("file_id", fileId);
    if (cursor) query.set("cursor", cursor);
    if (limit) query.set("limit", limit);
    const text = query.toString();
    return this.request("GET", `/api/shares${text ? `?${text}` : ""}`);
  }

  /** Revoke a link: it stops at once; returns the Share with revoked: true. */
  revokeShare(id) {
    return this.request("DELETE", `/api/shares/${encodeURIComponent(id)}`);
  }
}

function filePath(id) {
  return `/api/files/${encodeURIComponent(id)}`;
}

/** Return the route of a folder, each segment escaped ("a b/c" → "/api/folders/a%20b/c"). */
function folderPath(path) {
  return `/api/folders/${String(path).split("/").map(encodeURIComponent).join("/")}`;
}

function multipartPath(id, tail = "") {
  return `/api/files/multipart/${encodeURIComponent(id)}${tail}`;
}

/**
 * Have the browser save what a presigned GET URL serves. Its Content-Disposition is "attachment",
 * so the browser saves the file and the page stays where it is.
 */
export function saveFromUrl(url) {
  const link = document.createElement("a");
  link.href = url;
  link.rel = "noopener";
  document.body.append(link);
  link.click();
  link.remove();
}
