// upload.js, the one-import entry point, still offers what it offered before the split
// into lib/ (uploadFiles became the Uploader class).
import { describe, expect, it } from "vitest";
import * as upload from "./upload.js";

describe("upload.js", () => {
  it("re-exports the client's public names from lib/", () => {
    const names = `
      ApiError DEFAULT_FILE_CONCURRENCY DEFAULT_PART_CONCURRENCY DEFAULT_RETRY ERROR_HELP HASH_CONCURRENCY
      Limiter MAX_RESIGNS RESUME_PREFIX ResumeStore S3DriveClient SIGN_BATCH STATE_LABELS TransferMeter
      Uploader abortError anySignal backoffDelay base64 createHasher describeError droppedItems folderOf
      formatBytes formatDuration isRefusedUrl isRetryable parseS3Error partLength rateText runLimited
      sendToStorage sha256Base64 sleep toApiError uploadMultipart withRetries
      INSPECTION_LABELS REASON_WORDS downloadErrorText fileEntry inspectionText thumbnailOf
      acceptFor browserPartSize distinctSizes precheck typeAllowed
      ICON_PATHS fileIcon fileDetails previewKind SHARE_EXPIRY_PRESETS canShare shareRequest shareSummary pausedError
    `
      .trim()
      .split(/\s+/);
    for (const name of names) expect(upload[name], name).toBeDefined();
  });
});
