// s3drive browser client, in one import: API calls and direct-to-S3 uploads, no DOM.
// Each part is a module of its own in lib/ (the page and <S3Uploader> import those);
// this file gathers their public names for apps that want a single entry point.
//
//   import { S3DriveClient, Uploader } from "./upload.js";
//   const api = new S3DriveClient();            // same origin as the page
//   await api.login("demo", "secret");
//   const results = await new Uploader(api, { onProgress, onState }).upload(fileList);

import { Uploader } from "./lib/uploader.js";

export { S3DriveClient } from "./lib/api.js";
export { Limiter, anySignal, runLimited } from "./lib/concurrency.js";
export { pickedItems, droppedItems } from "./lib/drop.js";
export { ApiError, ERROR_HELP, abortError, describeError, toApiError } from "./lib/errors.js";
export { STATE_LABELS, TransferMeter, formatBytes, formatDuration, plural, rateText, stateText } from "./lib/format.js";
export { HASH_CONCURRENCY, base64, createHasher, sha256Base64 } from "./lib/hash.js";
export { DEFAULT_PART_CONCURRENCY, SIGN_BATCH, partLength, uploadMultipart } from "./lib/multipart.js";
export { RESUME_PREFIX, ResumeStore, mayResume } from "./lib/resume-store.js";
export { DEFAULT_RETRY, backoffDelay, isRefusedUrl, isRetryable, sleep, withRetries } from "./lib/retry.js";
export { MAX_RESIGNS, parseS3Error, sendToStorage, sendWithRetries } from "./lib/storage.js";
export { DEFAULT_FILE_CONCURRENCY, Uploader, countResults, folderOf } from "./lib/uploader.js";

/** Upload many files (see Uploader); kept only until the page and <S3Uploader> use Uploader. */
export function uploadFiles(client, items, options = {}) {
  return new Uploader(client, options).upload(items);
}
