// What people read for each error (errors.js).
import { describe, expect, it } from "vitest";
import { ApiError, ERROR_HELP, describeError } from "./errors.js";

describe("describeError", () => {
  it("has a message and a hint for every error code of the API", () => {
    const codes = [
      "bad_request",
      "unauthorized",
      "token_expired",
      "token_revoked",
      "invalid_token",
      "forbidden",
      "registration_closed",
      "not_found",
      "conflict",
      "object_missing",
      "username_taken",
      "invalid_state",
      "not_ready",
      "file_too_large",
      "batch_too_large",
      "content_type_not_allowed",
      "validation_error",
      "integrity_mismatch",
      "rate_limited",
      "storage_unavailable",
      "database_unavailable",
      "quota_exceeded",
      "internal_error",
    ];
    for (const code of codes) {
      expect(ERROR_HELP[code], code).toBeDefined();
      const text = describeError(new ApiError(400, code, ""));
      expect(text, code).toContain(ERROR_HELP[code].title);
    }
    const invalid = new ApiError(422, "validation_error", "The request has invalid fields.", {
      file_size: ["Must be greater than or equal to 0."],
    });
    expect(describeError(invalid)).toBe(
      "The request has invalid fields: file_size: Must be greater than or equal to 0.",
    );
    const limited = new ApiError(429, "rate_limited", "Too many requests.", {}, { retryAfter: 30 });
    expect(describeError(limited)).toBe("Too many requests. Wait a moment and try again. (Retry after 30 s.)");
    const bug = new ApiError(500, "internal_error", "An unexpected error occurred.", {}, { requestId: "abc123" });
    expect(describeError(bug)).toContain("Request id: abc123.");
    const quota = new ApiError(507, "quota_exceeded", "The upload needs 5 MiB; 1 MiB is free.");
    expect(describeError(quota)).toBe(
      "The upload needs 5 MiB; 1 MiB is free. Delete some files, or ask an administrator for more space.",
    );
  });
});
