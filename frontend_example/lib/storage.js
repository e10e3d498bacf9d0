// Sending bytes straight to S3 through a presigned URL (PUT) or form (POST), with
// progress, cancel, retries, and a fresh URL when S3 refuses an expired one.
import { ApiError, abortError, retryAfterSeconds } from "./errors.js";
import { isRefusedUrl, withRetries } from "./retry.js";

export const MAX_RESIGNS = 2; // fresh URLs per part or file after S3 answered 403

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
    const { xhr, body } = openRequest(target, blob);
    const onAbort = () => xhr.abort();
    const settle = (fn, value) => {
      signal?.removeEventListener("abort", onAbort);
      fn(value);
    };
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status < 200 || xhr.status >= 300) {
        settle(reject, refusal(xhr));
        return;
      }
      onProgress(blob.size);
      settle(resolve, { status: xhr.status, etag: xhr.getResponseHeader("ETag") });
    };
    // A CORS refusal and a dropped connection look the same to a page: status 0.
    xhr.onerror = () => settle(reject, connectionFailure());
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => settle(reject, abortError());
    signal?.addEventListener("abort", onAbort, { once: true });
    xhr.send(body);
  });
}

/** Return an opened XMLHttpRequest for target and the body to send with it. */
function openRequest(target, blob) {
  const method = target.method || "PUT";
  const xhr = new XMLHttpRequest();
  xhr.open(method, target.url ?? target.presigned_url);
  if (method !== "POST") {
    for (const [name, value] of Object.entries(target.headers || {})) xhr.setRequestHeader(name, value);
    return { xhr, body: blob };
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(target.fields || {})) form.append(name, value);
  form.append("file", blob); // S3 ignores form fields after the file.
  return { xhr, body: form };
}

/** Return the ApiError for S3's non-2xx answer, from its XML error body. */
function refusal(xhr) {
  const s3 = parseS3Error(xhr.responseText);
  const message = `Storage refused the upload: ${s3.message || s3.code || `HTTP ${xhr.status}`}.`;
  const retryAfter = retryAfterSeconds(xhr.getResponseHeader("Retry-After"));
  return new ApiError(xhr.status, s3.code || "storage_error", message, {}, { source: "storage", retryAfter });
}

function connectionFailure() {
  const message = "The connection to storage failed (network or CORS).";
  return new ApiError(0, "network_error", message, {}, { source: "storage" });
}

/**
 * Send blob to target() with retries and backoff; when S3 refuses an expired URL,
 * await renew(error, attempt) (which makes target() answer a fresh one) and send again at once.
 * Options: signal, retry, wait, onProgress(bytes), onRetry(error, attempt, delayMs).
 * Resolves with {status, etag}.
 */
export function sendWithRetries(blob, { target, renew, signal, retry, wait, onProgress, onRetry }) {
  let resigned = 0;
  const send = async () => {
    for (;;) {
      const current = await target(); // outside the try: a failed signing is not a refused URL
      try {
        return await sendToStorage(current, blob, { signal, onProgress });
      } catch (error) {
        onProgress(0);
        if (!isRefusedUrl(error) || resigned >= MAX_RESIGNS) throw error;
        // Expired (a long pause, a sleeping laptop): a fresh URL now, not a backoff.
        resigned += 1;
        await renew(error, resigned);
      }
    }
  };
  return withRetries(send, { retry, signal, wait, onRetry });
}
