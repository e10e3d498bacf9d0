// Wording for people: sizes, durations, speed and time left, and what each upload state
// reads as. Shared by the page (app.js) and <S3Uploader>, so both say the same things.
import { describeError } from "./errors.js";

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

  /** Note that loaded of total bytes are sent now; return the reading. */
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

/** Format a byte count for people, one decimal at most: 1536 → "1.5 KiB", 5 GiB → "5 GiB". */
export function formatBytes(bytes) {
  // The same wording as the server's messages (s3drive/sizes.py): "File is 6 GiB; the limit is 5 GiB."
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  // Compared as it will print: 1023.99 KiB reads "1 MiB", not "1024 KiB".
  while (Math.abs(Number(value.toFixed(unit ? 1 : 0))) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? Math.trunc(value) : value.toFixed(1).replace(/\.0$/, "")} ${units[unit]}`;
}

/** Return sizes a and b for people, with exact byte counts when different sizes would read the same. */
export function distinctSizes(a, b) {
  const words = [formatBytes(a), formatBytes(b)];
  if (a === b || words[0] !== words[1]) return words;
  const exact = new Intl.NumberFormat("en-US");
  return [`${words[0]} (${exact.format(a)} bytes)`, `${words[1]} (${exact.format(b)} bytes)`];
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
  paused: "Paused",
  confirming: "Confirming…",
  completing: "Finishing…",
  complete: "Uploaded",
  cancelled: "Cancelled",
});

/** Return "3 MiB of 10 MiB · 1.2 MiB/s · 6 s left" for a TransferMeter reading. */
export function rateText({ loaded, total, speed, eta }) {
  const parts = [`${formatBytes(loaded)} of ${formatBytes(total)}`];
  if (speed) parts.push(`${formatBytes(speed)}/s`);
  if (eta != null && loaded < total) parts.push(`${formatDuration(eta)} left`);
  return parts.join(" · ");
}

/**
 * Return what a file's row says in state: its label, a failed file's reason, how long a
 * retry waits, how much a resumed upload carried over, or that a ready file will resume.
 * detail is what the Uploader's onState gave with state.
 */
export function stateText(state, detail = null, { resumable = false } = {}) {
  if (state === "failed") return `Failed: ${detail?.message || "unknown error"}`;
  if (state === "ready" && resumable) return "Ready: continues the interrupted upload";
  if (state === "retrying" && detail?.delay) {
    return `${describeError(detail.error)} Retrying in ${formatDuration(detail.delay / 1000)}…`;
  }
  if (state === "resuming" && detail?.resumedBytes) {
    return `Resuming: ${formatBytes(detail.resumedBytes)} were already uploaded`;
  }
  return STATE_LABELS[state] || state;
}

/** Return "1 file", "2 files": count and word, plural when count is not 1. */
export function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}
