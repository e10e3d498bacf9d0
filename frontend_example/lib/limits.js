// What the server's limits (GET /api/files/limits) and the user's usage (GET /api/files/usage)
// say of files before anything is hashed or sent: a 60 MiB file over the quota fails at once,
// in words, instead of after its checksum. The server stays the authority: this only fails
// early what it would refuse anyway, and its answer still wins for everything else.
//
// Upload profiles (limits.profiles: {name: effective limits}, `default` first) narrow the limits
// for one purpose: profileLimits(limits, name) is a limits object like the server's own, and every
// check here takes either one.
import { ApiError } from "./errors.js";
import { distinctSizes, formatBytes } from "./format.js";

// Types that stand for "anything": such a list needs no filter in the file picker.
const EVERYTHING = new Set(["*", "*/*"]);
// How many allowed types a refusal names before it says "…".
const NAMED_TYPES = 6;
export const DEFAULT_PROFILE = "default";

/** Return the server's upload profiles in its order (`default` first); ["default"] when it lists none. */
export function profileNames(limits) {
  const names = Object.keys(limits?.profiles ?? {});
  return names.length ? names : [DEFAULT_PROFILE];
}

/** Tell whether the server offers a choice of profiles (more than `default`). */
export function hasProfiles(limits) {
  return profileNames(limits).length > 1;
}

/**
 * Return the limits files uploaded with profile must meet: the server's limits with the profile's
 * effective ones over them, and `profile` set to its name (null, `default` or a name the server
 * does not list: the server's own limits, and it answers for an unknown name itself).
 */
export function profileLimits(limits, profile) {
  const own = profile && limits?.profiles?.[profile];
  if (!own || profile === DEFAULT_PROFILE) return limits;
  return { ...limits, ...own, profile };
}

/** Return a profile's option text: "avatar — Profile pictures" (the name alone without a description). */
export function profileLabel(name, limits) {
  const description = limits?.profiles?.[name]?.description;
  return description ? `${name} — ${description}` : name;
}

/** Return the MIME type a file is declared with (what Uploader sends as content_type). */
export function declaredType(file) {
  return (file.type || "application/octet-stream").toLowerCase();
}

/** Tell whether a MIME type matches the allow-list, wildcards included (image/*), as the server matches it. */
export function typeAllowed(type, allowed) {
  if (!allowed) return true;
  return allowed.some((pattern) => globRegExp(pattern).test(type.toLowerCase()));
}

// The server matches with fnmatch: * is any run of characters, ? one character.
function globRegExp(pattern) {
  const source = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replaceAll("*", ".*")
    .replaceAll("?", ".");
  return new RegExp(`^${source}$`);
}

/**
 * Return the file input's accept value for allowed_content_types, or "" (no filter) when the
 * list allows everything or has a pattern accept cannot say (application/vnd.ms-*): a filter
 * must never hide a file the server would take.
 */
export function acceptFor(allowed) {
  if (!allowed?.length) return "";
  const expressible = (type) => !type.includes("*") || /^[a-z0-9.+-]+\/\*$/i.test(type);
  if (allowed.some((type) => EVERYTHING.has(type) || !expressible(type))) return "";
  return allowed.join(",");
}

/**
 * Return the ApiError the server would answer for a file over the per-file limit or of a refused type,
 * or null; with a profile's limits (profileLimits), the message names the profile as the server does
 * ("the limit for avatar uploads is 10 MiB").
 */
export function policyProblem(file, limits) {
  const profile = limits?.profile;
  if (limits?.max_file_size != null && file.size > limits.max_file_size) {
    const [size, limit] = distinctSizes(file.size, limits.max_file_size);
    const whose = profile ? ` for ${profile} uploads` : "";
    return new ApiError(413, "file_too_large", `File is ${size}; the limit${whose} is ${limit}.`, {
      file_size: file.size,
      max_file_size: limits.max_file_size,
      ...(profile ? { profile } : {}),
    });
  }
  const type = declaredType(file);
  if (!typeAllowed(type, limits?.allowed_content_types)) {
    const allowed = limits.allowed_content_types;
    const named = allowed.slice(0, NAMED_TYPES).join(", ") + (allowed.length > NAMED_TYPES ? ", …" : "");
    const where = profile ? `for ${profile} uploads` : "here";
    const message = `Files of type ${type} are not allowed ${where} (allowed: ${named}).`;
    const details = profile ? { profile, allowed_content_types: allowed } : {};
    return new ApiError(415, "content_type_not_allowed", message, details);
  }
  return null;
}

/** Return the bytes a user may still upload: the quota less what is used and what pending uploads reserve. */
export function availableBytes(usage) {
  return Math.max(0, usage.quota_bytes - usage.used_bytes - usage.reserved_bytes);
}

/**
 * Return, per file, the ApiError the server would answer for it, or null: the per-file limit,
 * the allowed types, and the quota (taken in order, as the server reserves a batch: a file that
 * does not fit fails, and the smaller ones after it may still fit). usage may be null (unknown).
 * A file whose quota is held already (an interrupted upload to resume) is named in `reserved`.
 */
export function precheck(files, limits, usage = null, { reserved = () => false } = {}) {
  let left = usage ? availableBytes(usage) : Infinity;
  return files.map((file) => {
    const problem = policyProblem(file, limits);
    if (problem || reserved(file)) return problem;
    if (file.size > left) {
      const [size, free] = distinctSizes(file.size, left);
      return new ApiError(507, "quota_exceeded", `Uploading ${size} would exceed your quota (${free} left).`, {
        available_bytes: left,
        file_size: file.size,
      });
    }
    left -= file.size;
    return null;
  });
}

/** Return "Up to 5 GiB a file, 3.2 GiB free." (what is known of it), for a hint beside the file picker. */
export function limitsText(limits, usage = null) {
  const parts = [];
  if (limits?.max_file_size != null) parts.push(`up to ${formatBytes(limits.max_file_size)} a file`);
  if (limits?.profile) parts.push(...profileRules(limits));
  if (usage) parts.push(`${formatBytes(availableBytes(usage))} free`);
  const text = parts.join(", ");
  return text && `${text[0].toUpperCase()}${text.slice(1)}.`;
}

/** Return what a profile's content check asks, in words: ["100–4096 px a side", "1–180 s long"]. */
export function profileRules(limits) {
  const rules = [];
  const sides = span(limits?.min_image_side, limits?.max_image_side);
  if (sides) rules.push(`images ${sides} px a side`);
  // Every profile has a longest duration: it is news only when narrower than the server's own.
  const longest = limits?.max_media_seconds;
  const narrower = longest != null && longest !== limits?.profiles?.[DEFAULT_PROFILE]?.max_media_seconds;
  const seconds = span(limits?.min_media_seconds, narrower ? longest : null);
  if (seconds) rules.push(`audio and video ${seconds} s long`);
  return rules;
}

function span(low, high) {
  if (low != null && high != null) return `${low}–${high}`;
  if (high != null) return `at most ${high}`;
  if (low != null) return `at least ${low}`;
  return "";
}
