// Share links (shares.js): who can share, the request body, and a link's words.
import { describe, expect, it } from "vitest";
import { SHARE_EXPIRY_PRESETS, canShare, shareRequest, shareSummary } from "./shares.js";

const utc = new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "short", timeZone: "UTC" });

describe("canShare", () => {
  it("shares only complete files whose content check passed (or that no check looks at)", () => {
    expect(canShare({ status: "complete", inspection: { state: "passed" } })).toBe(true);
    expect(canShare({ status: "complete", inspection: { state: "pending" } })).toBe(false);
    expect(canShare({ status: "complete", inspection: null })).toBe(true); // a server that checks nothing
    expect(canShare({ status: "rejected", inspection: { state: "rejected" } })).toBe(false);
  });
});

describe("shareRequest", () => {
  it("sends the expiry, and a limit and a password only when given", () => {
    expect(SHARE_EXPIRY_PRESETS.map((preset) => preset.seconds)).toEqual([3600, 86400, 604800, 2592000]);
    expect(SHARE_EXPIRY_PRESETS.find((preset) => preset.default).label).toBe("7 days");
    expect(shareRequest({ expiresIn: "3600" })).toEqual({ body: { expires_in: 3600 }, problem: null });
    expect(shareRequest({ expiresIn: 86400, maxDownloads: " 3 ", password: "s3cret pass" }).body).toEqual({
      expires_in: 86400,
      max_downloads: 3,
      password: "s3cret pass",
    });
  });

  it("refuses a download limit that is not a whole number of at least 1", () => {
    for (const bad of ["0", "-2", "1.5", "many"]) {
      const { body, problem } = shareRequest({ expiresIn: 3600, maxDownloads: bad });
      expect(body).toBeNull();
      expect(problem).toMatch(/whole number/);
    }
  });
});

describe("shareSummary", () => {
  const now = Date.parse("2026-11-21T12:00:00Z");
  const share = {
    expires_at: "2026-11-22T12:00:00Z",
    max_downloads: 5,
    downloads: 2,
    has_password: true,
    revoked: false,
  };

  it("says the expiry, the downloads against the limit, and whether a password guards it", () => {
    expect(shareSummary(share, { now, dateFormat: utc })).toEqual({
      state: "active",
      expires: "Expires 22 Nov 2026, 12:00",
      downloads: "2 of 5 downloads",
      password: "Password: yes",
    });
    const open = shareSummary({ ...share, max_downloads: null, downloads: 1, has_password: false }, { now });
    expect(open).toMatchObject({ downloads: "1 download, no limit", password: "Password: no" });
  });

  it("tells a revoked, an expired and a used-up link apart", () => {
    expect(shareSummary({ ...share, revoked: true }, { now }).state).toBe("revoked");
    const expired = shareSummary({ ...share, expires_at: "2026-11-20T12:00:00Z" }, { now, dateFormat: utc });
    expect(expired).toMatchObject({ state: "expired", expires: "Expired 20 Nov 2026, 12:00" });
    expect(shareSummary({ ...share, downloads: 5 }, { now }).state).toBe("used up");
  });
});
