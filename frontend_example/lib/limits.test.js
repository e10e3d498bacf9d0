// The server's limits as the page applies them before hashing (limits.js): types with
// wildcards, the file picker's accept, and the quota taken in file order.
import { describe, expect, it } from "vitest";
import { makeFile } from "./fakes.js";
import {
  acceptFor,
  availableBytes,
  hasProfiles,
  limitsText,
  policyProblem,
  precheck,
  profileLabel,
  profileLimits,
  profileNames,
  typeAllowed,
} from "./limits.js";

const GIB = 1024 ** 3;
const LIMITS = { max_file_size: 5 * GIB, allowed_content_types: ["image/*", "text/plain", "application/vnd.ms-*"] };

/** A File-like of any size, without its bytes (a 6 GiB file would not fit in memory). */
const sized = (name, size, type = "") => ({ name, size, type });

describe("limits", () => {
  it("matches types as the server does, wildcards included", () => {
    expect(typeAllowed("image/png", LIMITS.allowed_content_types)).toBe(true);
    expect(typeAllowed("IMAGE/PNG", LIMITS.allowed_content_types)).toBe(true);
    expect(typeAllowed("application/vnd.ms-excel", LIMITS.allowed_content_types)).toBe(true);
    expect(typeAllowed("text/html", LIMITS.allowed_content_types)).toBe(false);
    expect(typeAllowed("imagexpng", ["image.png"])).toBe(false); // a dot is a dot
    expect(typeAllowed("anything/at-all", null)).toBe(true);
  });

  it("gives the file picker an accept filter only when it hides nothing the server takes", () => {
    expect(acceptFor(["image/*", "text/plain", "application/pdf"])).toBe("image/*,text/plain,application/pdf");
    expect(acceptFor(["image/*", "*/*"])).toBe(""); // everything
    expect(acceptFor(LIMITS.allowed_content_types)).toBe(""); // accept cannot say application/vnd.ms-*
    expect(acceptFor([])).toBe("");
  });

  it("says why a file is refused, in words, with the bytes in details", () => {
    const big = policyProblem(sized("film.mkv", 6 * GIB, "video/x-matroska"), LIMITS);
    expect(big.code).toBe("file_too_large");
    expect(big.message).toBe("File is 6 GiB; the limit is 5 GiB.");
    expect(big.details).toEqual({ file_size: 6 * GIB, max_file_size: 5 * GIB });
    const close = policyProblem(sized("a.png", 5 * GIB + 1, "image/png"), LIMITS);
    expect(close.message).toBe("File is 5 GiB (5,368,709,121 bytes); the limit is 5 GiB (5,368,709,120 bytes).");
    const type = policyProblem(sized("page.html", 10, "text/html"), LIMITS);
    expect(type.code).toBe("content_type_not_allowed");
    expect(type.message).toContain("text/html");
    expect(policyProblem(sized("unknown", 10), LIMITS).message).toContain("application/octet-stream");
    expect(policyProblem(sized("a.png", 10, "image/png"), LIMITS)).toBeNull();
  });

  it("takes the quota in file order, reserved bytes counted, interrupted uploads exempt", () => {
    const usage = { quota_bytes: 100, used_bytes: 30, reserved_bytes: 20, file_count: 1 };
    expect(availableBytes(usage)).toBe(50);
    const files = [makeFile("a", 30), makeFile("b", 30), makeFile("c", 20), makeFile("d", 60)];
    const problems = precheck(files, { allowed_content_types: ["*/*"] }, usage, { reserved: (f) => f.name === "d" });
    expect(problems.map((p) => p?.code ?? null)).toEqual([null, "quota_exceeded", null, null]);
    expect(problems[1].message).toBe("Uploading 30 B would exceed your quota (20 B left).");
    expect(problems[1].details).toEqual({ available_bytes: 20, file_size: 30 });
    expect(precheck(files, {}, null)).toEqual([null, null, null, null]); // usage unknown: the server decides
    expect(limitsText(LIMITS, usage)).toBe("Up to 5 GiB a file, 50 B free.");
    expect(limitsText(null, null)).toBe("");
  });

  it("checks a profile's effective limits on the same path, naming the profile", () => {
    const MIB = 1024 ** 2;
    const server = {
      ...LIMITS,
      multipart_threshold: 100 * MIB,
      profiles: {
        default: { description: null, max_file_size: 5 * GIB, allowed_content_types: LIMITS.allowed_content_types },
        avatar: {
          description: "Profile pictures",
          max_file_size: 10 * MIB,
          allowed_content_types: ["image/jpeg", "image/png", "image/webp"],
          min_image_side: 100,
          max_image_side: 4096,
          min_media_seconds: null,
          max_media_seconds: 21600,
        },
        video: { description: null, max_file_size: GIB, allowed_content_types: ["video/mp4"], max_media_seconds: 180 },
      },
    };
    server.profiles.default.max_media_seconds = 21600;
    expect(profileNames(server)).toEqual(["default", "avatar", "video"]);
    expect(profileNames(LIMITS)).toEqual(["default"]); // a server without profiles
    expect([hasProfiles(server), hasProfiles(LIMITS), hasProfiles(null)]).toEqual([true, false, false]);
    expect(profileLabel("avatar", server)).toBe("avatar — Profile pictures");
    expect(profileLabel("default", server)).toBe("default");

    const avatar = profileLimits(server, "avatar");
    expect(avatar.profile).toBe("avatar");
    expect(avatar.max_file_size).toBe(10 * MIB);
    expect(avatar.multipart_threshold).toBe(100 * MIB); // the server's own where the profile says nothing
    // default, none, or a name the server does not list: the server's limits (it answers for unknown names).
    for (const name of ["default", null, "nope"]) expect(profileLimits(server, name)).toBe(server);

    const big = policyProblem(sized("me.jpg", 11 * MIB, "image/jpeg"), avatar);
    expect(big.code).toBe("file_too_large");
    expect(big.message).toBe("File is 11 MiB; the limit for avatar uploads is 10 MiB.");
    const pdf = policyProblem(sized("cv.pdf", 1000, "application/pdf"), avatar);
    expect(pdf.code).toBe("content_type_not_allowed");
    expect(pdf.message).toBe(
      "Files of type application/pdf are not allowed for avatar uploads (allowed: image/jpeg, image/png, image/webp).",
    );
    expect(policyProblem(sized("me.png", 5 * MIB, "image/png"), avatar)).toBeNull();
    expect(policyProblem(sized("a.gif", 1000, "image/gif"), profileLimits(server, "default"))).toBeNull();
    const problems = precheck([sized("me.png", 11 * MIB, "image/png"), sized("x.png", 1, "image/png")], avatar);
    expect(problems.map((p) => p?.code ?? null)).toEqual(["file_too_large", null]);

    expect(acceptFor(avatar.allowed_content_types)).toBe("image/jpeg,image/png,image/webp");
    expect(acceptFor(profileLimits(server, "default").allowed_content_types)).toBe(""); // application/vnd.ms-*
    expect(limitsText(avatar)).toBe("Up to 10 MiB a file, images 100–4096 px a side.");
    expect(limitsText(profileLimits(server, "video"))).toBe("Up to 1 GiB a file, audio and video at most 180 s long.");
    expect(limitsText(profileLimits(server, "default"))).toBe("Up to 5 GiB a file.");
  });
});
