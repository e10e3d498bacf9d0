// The API client (api.js) against the fake API: which calls it retries, token refresh,
// the end of a session.
import { describe, expect, it, vi } from "vitest";
import { drive, signedInClient, useFakeDrive } from "./fakes.js";

useFakeDrive();

describe("API client", () => {
  it("retries a presign answered 503 (the server did nothing), but not one answered 500", async () => {
    const client = await signedInClient();
    const spec = { file_name: "a.txt", content_type: "text/plain", file_size: 1 };
    drive.apiFaults.push({
      when: (m, p) => p === "/api/files/upload/",
      status: 503,
      code: "storage_unavailable",
      times: 2,
    });
    await client.presign([spec]);
    expect(drive.count("POST /api/files/upload/")).toBe(3);

    drive.apiFaults.push({ when: (m, p) => p === "/api/files/upload/", status: 500, code: "internal_error" });
    await expect(client.presign([spec])).rejects.toMatchObject({ status: 500, code: "internal_error" });
    expect(drive.count("POST /api/files/upload/")).toBe(4);
  });

  it("retries idempotent calls after network errors and 5xx", async () => {
    const client = await signedInClient();
    drive.apiFaults.push({ when: (m, p) => p === "/api/files/usage", kind: "network" });
    drive.apiFaults.push({ when: (m, p) => p === "/api/files/usage", status: 502, code: "http_error" });
    await expect(client.usage()).resolves.toMatchObject({ used_bytes: 0 }); // the third try gets through
    expect(drive.count("GET /api/files/usage")).toBe(3);
  });

  it("refreshes an expired access token once and repeats the call", async () => {
    const client = await signedInClient();
    drive.expiredTokens.add("Bearer access-1");
    await client.listFiles({ q: "x" }).catch(() => {});
    expect(drive.calls).toEqual([
      "POST /api/auth/login",
      "GET /api/files/",
      "POST /api/auth/refresh",
      "GET /api/files/",
    ]);
    expect(client.tokens.access_token).toBe("access-2");
  });

  it("ends the session when the refresh token is refused", async () => {
    const client = await signedInClient();
    const ended = vi.fn();
    client.onSignedOut = ended;
    drive.expiredTokens.add("Bearer access-1");
    client.tokens.refresh_token = "stale";
    await expect(client.usage()).rejects.toMatchObject({ status: 401 });
    expect(client.signedIn).toBe(false);
    expect(ended).toHaveBeenCalled();
  });


  it("sends the drive's calls to their routes: folders escaped per segment, shares, bulk moves and deletes", async () => {
    const client = await signedInClient();
    for (const call of [
      () => client.createFolder("trips/2026"),
      () => client.moveFolder("trips/summer 26", "archive/trips"),
      () => client.deleteFolder("a/ü"),
      () => client.moveFiles(["f1", "f2"], "trips"),
      () => client.deleteFiles(["f1"]),
      () => client.createShare("f1", { expires_in: 3600 }),
      () => client.listShares({ fileId: "f1" }),
      () => client.revokeShare("s1"),
    ]) {
      await call().catch(() => {}); // the fake API knows none of these: what matters is what was sent
    }
    expect(drive.calls).toEqual([
      "POST /api/auth/login",
      "POST /api/folders",
      "PATCH /api/folders/trips/summer%2026",
      "DELETE /api/folders/a/%C3%BC",
      "POST /api/files/move",
      "POST /api/files/delete",
      "POST /api/files/f1/shares",
      "GET /api/shares",
      "DELETE /api/shares/s1",
    ]);
    expect(drive.bodies.map(([, body]) => body).slice(1, 7)).toEqual([
      { path: "trips/2026" },
      { new_path: "archive/trips" },
      undefined,
      { ids: ["f1", "f2"], folder: "trips" },
      { ids: ["f1"] },
      { expires_in: 3600 },
    ]);
  });
});
