// Errors of the API, of S3 and of the client as one ApiError type, and what each one
// means for the person in front of the page.

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

/** Return the error a paused upload stops with (what it has sent stays, for the resume). */
export function pausedError() {
  return new ApiError(0, "paused", "The upload was paused.", {}, { source: "client" });
}

// What each code means for the person in front of the page, and what they can do:
// [title, hint]. Server messages are specific sentences ("The file is 6 GiB; the limit
// is 5 GiB."), so they are shown when present; the hint says what to do next.
const HELP = {
  // API.md codes
  bad_request: ["The request was malformed.", "Reload the page and try again."],
  unauthorized: ["Not signed in, or wrong username or password.", "Check your details and sign in."],
  token_expired: ["Your session has expired.", "Sign in again."],
  token_revoked: ["You were signed out.", "Sign in again."],
  invalid_token: ["Your session is not valid.", "Sign in again."],
  forbidden: ["You are not allowed to do that.", ""],
  registration_closed: ["This server does not accept new accounts.", "Ask an administrator to create one for you."],
  not_found: ["Not found.", "It may have been deleted; reload the list."],
  conflict: ["That conflicts with the file's current state.", "Reload and try again."],
  object_missing: ["The upload has not reached storage.", "Upload the file again."],
  username_taken: ["That username is taken.", "Choose another one, or sign in."],
  invalid_state: ["Not possible in the file's current state.", "Reload the list and try again."],
  not_ready: ["The file's content is still being checked.", "Try again in a moment."],
  file_too_large: ["The file is larger than the server allows.", ""],
  batch_too_large: ["Too many files in one request.", "Upload fewer files at a time."],
  content_type_not_allowed: ["This type of file is not allowed.", ""],
  validation_error: ["Some values are not valid.", ""],
  rate_limited: ["Too many requests.", "Wait a moment and try again."],
  storage_unavailable: ["Storage is not answering.", "Try again in a few seconds."],
  database_unavailable: ["The server's database is not answering.", "Try again in a few seconds."],
  internal_error: ["The server hit an unexpected error.", "Try again; if it keeps failing, report it."],
  integrity_mismatch: [
    "What reached storage differs from the file that was declared; it was rejected.",
    "Upload the file again.",
  ],
  quota_exceeded: [
    "Not enough space left in your quota.",
    "Delete some files, or ask an administrator for more space.",
  ],
  // Client-side and storage conditions
  network_error: ["Cannot reach the server.", "Check your connection and try again."],
  aborted: ["Cancelled.", ""],
  paused: ["Paused.", "Resume it to go on."],
  read_error: ["The file could not be read.", "Pick it again; it may have moved or changed."],
  storage_error: ["Storage refused the upload.", "Try again."],
  AccessDenied: ["Storage refused the upload link (it may have expired).", "Try again."],
  SignatureDoesNotMatch: ["Storage refused the upload: the file changed since it was picked.", "Pick it again."],
  RequestTimeTooSkewed: ["Your computer's clock is wrong.", "Correct the clock, then try again."],
  // Per-file results of a batch confirm
  missing: ["The upload did not reach storage.", "Upload the file again."],
  mismatch: ["What reached storage differs from the file; it was rejected.", "Upload the file again."],
  error: ["The server could not confirm the upload.", "Try again."],
};

/** Per error code, {title, hint}: a sentence for people and what they can do next. */
export const ERROR_HELP = Object.freeze(
  Object.fromEntries(Object.entries(HELP).map(([code, [title, hint]]) => [code, { title, hint }])),
);

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

// Marshmallow nests the fields of nested schemas: {files: {0: {file_size: ["…"]}}} → "files.0.file_size: …".
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

/** Return the seconds a Retry-After header asks to wait (a number or an HTTP date), or null. */
export function retryAfterSeconds(value) {
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
