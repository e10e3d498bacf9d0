// s3drive browser client: API calls and direct-to-S3 uploads. No DOM code here, so
// other pages (or a React component) can reuse it; progress and state arrive
// through callbacks.
//
//   const api = new S3DriveClient();            // same origin as the page
//   await api.login("demo", "secret");
//   const results = await uploadFiles(api, fileList, { onProgress, onState });

export const CHECKSUM_MAX_BYTES = 100 * 1024 * 1024; // hash only what fits comfortably in memory
export const DEFAULT_CONCURRENCY = 4;

/** An error answer of the API ({"error": {"code", "message", "details"}}) or of S3. */
export class ApiError extends Error {
  constructor(status, code, message, details = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
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
    error?.message || `HTTP ${response.status} ${response.statusText}`.trim(),
    error?.details || {},
  );
}

/** Calls the s3drive API with a bearer token, refreshing it once when it expired. */
export class S3DriveClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl] API origin, "" for the page's own.
   * @param {Storage|null} [options.storage] where tokens survive a reload (sessionStorage by default).
   */
  constructor({ baseUrl = "", storage = globalThis.sessionStorage ?? null } = {}) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.storage = storage;
    this.tokens = this._loadTokens();
  }

  get signedIn() {
    return Boolean(this.tokens?.access_token);
  }

  _loadTokens() {
    try {
      return JSON.parse(this.storage?.getItem("s3drive.tokens") || "null");
    } catch {
      return null;
    }
  }

  _saveTokens(tokens) {
    this.tokens = tokens;
    if (!this.storage) return;
    if (tokens) this.storage.setItem("s3drive.tokens", JSON.stringify(tokens));
    else this.storage.removeItem("s3drive.tokens");
  }

  /** Send one JSON request; return the parsed body or throw ApiError. */
  async request(method, path, body = undefined, { auth = true, token = null, retry = true } = {}) {
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
      });
    } catch (cause) {
      throw new ApiError(0, "network_error", `Cannot reach the server (${cause.message}).`);
    }
    if (response.ok) {
      return response.status === 204 ? null : response.json();
    }
    const error = await errorFromResponse(response);
    if (error.code === "token_expired" && auth && !token && retry && this.tokens?.refresh_token) {
      await this.refresh();
      return this.request(method, path, body, { auth, retry: false });
    }
    if (error.status === 401 && auth && !token) this._saveTokens(null); // Sign-in needed again.
    return Promise.reject(error);
  }

  async register(username, password) {
    return (await this.request("POST", "/api/auth/register", { username, password }, { auth: false })).user;
  }

  async login(username, password) {
    const tokens = await this.request("POST", "/api/auth/login", { username, password }, { auth: false });
    this._saveTokens({ access_token: tokens.access_token, refresh_token: tokens.refresh_token });
    return tokens;
  }

  async refresh() {
    try {
      const answer = await this.request("POST", "/api/auth/refresh", undefined, {
        token: this.tokens.refresh_token,
      });
      this._saveTokens({ ...this.tokens, access_token: answer.access_token });
    } catch (error) {
      this._saveTokens(null);
      throw error;
    }
  }

  /** Revoke both tokens on the server (best effort) and forget them. */
  async logout() {
    const tokens = this.tokens;
    this._saveTokens(null);
    if (!tokens) return;
    for (const token of [tokens.access_token, tokens.refresh_token]) {
      if (!token) continue;
      try {
        await this.request("POST", "/api/auth/logout", undefined, { token });
      } catch {
        // Expired or already revoked: nothing left to do.
      }
    }
  }

  me() {
    return this.request("GET", "/api/auth/me");
  }

  usage() {
    return this.request("GET", "/api/files/usage");
  }

  limits() {
    return this.request("GET", "/api/files/limits", undefined, { auth: false });
  }

  presign(specs) {
    return this.request("POST", "/api/files/upload/", { files: specs });
  }

  confirm(ids) {
    return this.request("POST", "/api/files/confirm_uploads/", { ids });
  }

  abortMultipart(id) {
    return this.request("DELETE", `/api/files/multipart/${encodeURIComponent(id)}`);
  }
}

/** Return the base64 SHA-256 of a Blob (reads it whole into memory). */
export async function sha256Base64(blob) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
  let binary = "";
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Return the S3 error code and message from an XML error body, if there is one. */
function parseS3Error(text) {
  const pick = (tag) => text?.match(new RegExp(`<${tag}>([^<]*)</${tag}>`))?.[1];
  return { code: pick("Code"), message: pick("Message") };
}

/**
 * Send one file to S3 with the ticket: PUT with exactly ticket.headers, or a
 * form POST with ticket.fields. XMLHttpRequest because fetch cannot report
 * upload progress. Resolves with {status, etag}; rejects with ApiError.
 */
export function sendToStorage(ticket, file, { onProgress = () => {}, signal = null } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method || "PUT", ticket.presigned_url);
    let body = file;
    if ((ticket.method || "PUT") === "POST") {
      body = new FormData();
      for (const [name, value] of Object.entries(ticket.fields || {})) body.append(name, value);
      body.append("file", file); // S3 ignores form fields after the file.
    } else {
      for (const [name, value] of Object.entries(ticket.headers || {})) xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size, file.size);
        resolve({ status: xhr.status, etag: xhr.getResponseHeader("ETag") });
        return;
      }
      const s3 = parseS3Error(xhr.responseText);
      reject(
        new ApiError(
          xhr.status,
          s3.code || "storage_error",
          `Storage refused the upload: ${s3.message || s3.code || `HTTP ${xhr.status}`}`,
        ),
      );
    };
    // A CORS refusal and a dropped connection look the same to a page: status 0.
    xhr.onerror = () => reject(new ApiError(0, "network_error", "The upload to storage failed (network or CORS)."));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "The upload was cancelled."));
    if (signal) {
      if (signal.aborted) {
        reject(new ApiError(0, "aborted", "The upload was cancelled."));
        return;
      }
      signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
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

function chunks(array, size) {
  const out = [];
  for (let i = 0; i < array.length; i += size) out.push(array.slice(i, i + size));
  return out;
}

function toApiError(error) {
  if (error instanceof ApiError) return error;
  if (error && typeof error.code === "string") {
    // An error object from a JSON body, e.g. a batch's per-file failure.
    return new ApiError(0, error.code, error.message || error.code, error.details || {});
  }
  return new ApiError(0, "client_error", String(error?.message || error));
}

/**
 * Upload files: hash (≤ 100 MiB), presign in batches, PUT with limited
 * concurrency, then confirm every uploaded file in one batch call.
 *
 * Returns one result per file, in input order:
 *   {file, status: "complete"|"failed", id?, s3_key?, error?: {code, message}}
 *
 * Callbacks (all optional):
 *   onState(index, state, detail)  state: hashing | signing | uploading | confirming | complete | failed
 *   onProgress(index, loaded, total)
 */
export async function uploadFiles(
  client,
  files,
  { concurrency = DEFAULT_CONCURRENCY, onState = () => {}, onProgress = () => {}, signal = null, extra = {} } = {},
) {
  files = Array.from(files);
  const results = files.map((file) => ({ file, status: "pending" }));
  const fail = (index, error) => {
    const { code, message } = toApiError(error);
    results[index] = { ...results[index], status: "failed", error: { code, message } };
    onState(index, "failed", results[index].error);
  };
  const limits = await client.limits();

  // 1. Describe each file; hash the ones small enough to read whole.
  const specs = [];
  await runLimited(files, 2, async (file, index) => {
    if (file.size > limits.multipart_threshold) {
      fail(index, new ApiError(0, "multipart_not_supported",
        "Files this large need a multipart upload, which this example page does not do."));
      return;
    }
    const spec = {
      ...extra,
      file_name: file.name,
      content_type: file.type || "application/octet-stream",
      file_size: file.size,
    };
    if (file.size <= CHECKSUM_MAX_BYTES) {
      onState(index, "hashing");
      try {
        spec.checksum_sha256 = await sha256Base64(file);
      } catch (error) {
        fail(index, new ApiError(0, "read_error", `Cannot read the file: ${error.message}`));
        return;
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
      answer = await client.presign(batch.map((entry) => entry.spec));
    } catch (error) {
      for (const { index } of batch) fail(index, error);
      continue;
    }
    const failedPositions = new Set(answer.failed.map((failure) => failure.index));
    for (const failure of answer.failed) fail(batch[failure.index].index, failure.error);
    const accepted = batch.filter((_, position) => !failedPositions.has(position));
    accepted.forEach(({ index }, position) => tickets.push({ index, ticket: answer.successful[position] }));
  }

  // 3. Send the bytes straight to storage, a few files at a time.
  const uploaded = [];
  await runLimited(tickets, concurrency, async ({ index, ticket }) => {
    results[index] = { ...results[index], id: ticket.id, s3_key: ticket.s3_key };
    if (ticket.multipart) {
      // The server chose multipart (its threshold differs from the one we read): give it back.
      client.abortMultipart(ticket.id).catch(() => {});
      fail(index, new ApiError(0, "multipart_not_supported", "The server asked for a multipart upload."));
      return;
    }
    onState(index, "uploading");
    try {
      await sendToStorage(ticket, files[index], {
        signal,
        onProgress: (loaded, total) => onProgress(index, loaded, total),
      });
      uploaded.push(index);
    } catch (error) {
      fail(index, error);
    }
  });

  // 4. One confirmation call per max_batch files: the server checks S3 for all of them.
  for (const batch of chunks(uploaded.sort((a, b) => a - b), limits.max_batch)) {
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
      if (item?.status === "success") {
        results[index] = { ...results[index], status: "complete" };
        onState(index, "complete");
      } else {
        fail(index, new ApiError(0, item?.status || "not_confirmed", item?.message || "Not confirmed."));
      }
    }
  }
  return results;
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
