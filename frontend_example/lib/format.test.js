// Wording for people (format.js): sizes, speed and time left, what each state reads as.
import { describe, expect, it } from "vitest";
import { ApiError } from "./errors.js";
import { TransferMeter, formatBytes, formatDuration, plural, rateText, stateText } from "./format.js";

describe("TransferMeter", () => {
  it("reports speed and time left from recent samples", () => {
    let now = 0;
    const meter = new TransferMeter({ now: () => now });
    expect(meter.update(0, 1000)).toMatchObject({ speed: null, eta: null });
    now = 1000;
    expect(meter.update(100, 1000)).toMatchObject({ speed: 100, eta: 9 });
    now = 2000;
    expect(meter.update(300, 1000)).toMatchObject({ speed: 150 });
    now = 2500;
    expect(meter.update(50, 1000)).toMatchObject({ speed: null }); // a retry restarted the bytes
  });
});

describe("rateText", () => {
  it("says how much, how fast and how long is left", () => {
    expect(rateText({ loaded: 3 * 1024 ** 2, total: 10 * 1024 ** 2, speed: 1024 ** 2, eta: 7 })).toBe(
      "3 MiB of 10 MiB · 1 MiB/s · 7 s left",
    );
    expect(rateText({ loaded: 10, total: 10, speed: 0, eta: 0 })).toBe("10 B of 10 B");
  });
});

describe("stateText", () => {
  it("labels each state, with a failed file's reason and a retry's wait", () => {
    expect(stateText("uploading")).toBe("Uploading…");
    expect(stateText("ready")).toBe("Ready");
    expect(stateText("ready", null, { resumable: true })).toBe("Ready: continues the interrupted upload");
    expect(stateText("failed", { code: "x", message: "Storage refused the upload." })).toBe(
      "Failed: Storage refused the upload.",
    );
    expect(stateText("failed")).toBe("Failed: unknown error");
    const offline = new ApiError(0, "network_error", "Cannot reach the server.");
    expect(stateText("retrying", { error: offline, attempt: 1, delay: 1500 })).toBe(
      "Cannot reach the server. Check your connection and try again. Retrying in 2 s…",
    );
    expect(stateText("retrying", { error: offline, attempt: 1, delay: 0 })).toBe("Connection trouble, retrying…");
    expect(stateText("resuming", { resumedBytes: 16 * 1024 ** 2 })).toBe(
      "Resuming: 16 MiB were already uploaded",
    );
    expect(stateText("something-new")).toBe("something-new");
  });

  it("says counts in words", () => {
    expect([0, 1, 2].map((n) => plural(n, "file"))).toEqual(["0 files", "1 file", "2 files"]);
  });
});

describe("formatBytes and formatDuration", () => {
  it("round for people", () => {
    expect([0, 1023, 1536, 5 * 1024 ** 3].map(formatBytes)).toEqual(["0 B", "1023 B", "1.5 KiB", "5 GiB"]);
    // The server's wording (s3drive/sizes.py): one decimal at most, none when it is 0, the next unit at 1024.
    expect([6442450944, 5.5 * 1024 ** 3, 1024 * 1023.99, 3 * 1024 ** 5].map(formatBytes)).toEqual([
      "6 GiB",
      "5.5 GiB",
      "1 MiB",
      "3 PiB",
    ]);
    expect([null, 7, 75, 3 * 3600 + 120].map(formatDuration)).toEqual(["", "7 s", "1 min 15 s", "3 h 2 min"]);
  });
});
