// Retries with exponential backoff, for API calls and for sending bytes to S3.
import { ApiError, abortError } from "./errors.js";

export const DEFAULT_RETRY = Object.freeze({ retries: 5, baseDelay: 500, maxDelay: 20_000 });

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
