// Share links (API.md "Share links"): which files can be shared, the expiry presets, the
// request body from what the form holds, and what a link's row says. No DOM here.
import { plural } from "./format.js";
import { inspectionState } from "./inspection.js";

const HOUR = 3600;
const DAY = 24 * HOUR;

/** The expiry choices of the share dialog; the server's default (7 days) comes first chosen. */
export const SHARE_EXPIRY_PRESETS = Object.freeze([
  { label: "1 hour", seconds: HOUR },
  { label: "1 day", seconds: DAY },
  { label: "7 days", seconds: 7 * DAY, default: true },
  { label: "30 days", seconds: 30 * DAY },
]);

/**
 * Tell whether a file can be shared: the server shares only complete files whose check passed, or
 * (no inspection at all: a server that does not check content) complete files.
 */
export function canShare(file) {
  if (file?.status !== "complete") return false;
  return file.inspection == null || inspectionState(file) === "passed";
}

/**
 * Return {body, problem} for POST /api/files/<id>/shares from the dialog's values: expiresIn
 * (seconds), maxDownloads ("" for no limit, else a whole number ≥ 1) and password ("" for none).
 * problem is a sentence when a value is not valid (and body is null).
 */
export function shareRequest({ expiresIn, maxDownloads = "", password = "" }) {
  const body = { expires_in: Number(expiresIn) };
  const limit = String(maxDownloads ?? "").trim();
  if (limit) {
    const count = Number(limit);
    if (!Number.isInteger(count) || count < 1) {
      return { body: null, problem: "The download limit must be a whole number of at least 1, or empty." };
    }
    body.max_downloads = count;
  }
  if (password) body.password = password;
  return { body, problem: null };
}

/** Return what a link's row says: {state, expires, downloads, password}, each in words. */
export function shareSummary(share, { now = Date.now(), dateFormat } = {}) {
  const expiresAt = Date.parse(share.expires_at);
  const usedUp = share.max_downloads != null && share.downloads >= share.max_downloads;
  let state = "active";
  if (share.revoked) state = "revoked";
  else if (expiresAt <= now) state = "expired";
  else if (usedUp) state = "used up";
  const when = dateFormat ? dateFormat.format(new Date(expiresAt)) : share.expires_at;
  return {
    state,
    expires: `${state === "expired" ? "Expired" : "Expires"} ${when}`,
    downloads:
      share.max_downloads == null
        ? `${plural(share.downloads, "download")}, no limit`
        : `${share.downloads} of ${plural(share.max_downloads, "download")}`,
    password: share.has_password ? "Password: yes" : "Password: no",
  };
}
