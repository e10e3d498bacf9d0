// Where multipart uploads wait to be resumed after a reload: the server's upload id and the
// parts already stored ([part number, ETag], saved as each one finishes), kept in localStorage
// under the file's name, size and modification time.

export const RESUME_PREFIX = "s3drive.multipart:";

/**
 * Tell whether user may resume a saved upload: it is theirs, it has no owner, or the
 * user is not known yet (the server answers not_found for another account's id anyway).
 */
export function mayResume(saved, user) {
  return !saved.owner || !user || saved.owner === user.id;
}

/** Where multipart upload ids wait for the same file to be picked again (localStorage). */
export class ResumeStore {
  constructor(storage = globalThis.localStorage ?? null) {
    this.storage = storage;
  }

  /** Return the key of a file: its name, size and modification time (all a page can see). */
  static key(file) {
    return `${RESUME_PREFIX}${file.name}:${file.size}:${file.lastModified ?? 0}`;
  }

  /** Return the saved state of file's upload, or null. */
  get(file) {
    return this._read(ResumeStore.key(file));
  }

  /** Save the state of file's upload (best effort). */
  set(file, state) {
    try {
      this.storage?.setItem(ResumeStore.key(file), JSON.stringify(state));
    } catch {
      // Storage full or disabled: the upload still runs, it just cannot resume after a reload.
    }
  }

  /** Note that part number of file's upload is stored in S3 with etag (best effort, like set). */
  addPart(file, number, etag) {
    const state = this.get(file);
    if (!state) return;
    const parts = (state.parts || []).filter(([n]) => n !== number);
    this.set(file, { ...state, parts: [...parts, [number, etag ?? null]] });
  }

  /** Forget file's upload. */
  delete(file) {
    this.storage?.removeItem(ResumeStore.key(file));
  }

  /** Forget the upload saved under key (a key from list()). */
  deleteKey(key) {
    this.storage?.removeItem(key);
  }

  /** Return every saved upload: [{key, id, file_name, file_size, part_size, parts, saved_at, …}]. */
  list() {
    if (!this.storage) return [];
    const out = [];
    for (let i = 0; i < this.storage.length; i += 1) {
      const key = this.storage.key(i);
      if (!key?.startsWith(RESUME_PREFIX)) continue;
      const state = this._read(key);
      if (state) out.push({ ...state, key });
    }
    return out;
  }

  // Another script's value under our prefix, or a hand-edited one, reads as nothing saved.
  _read(key) {
    try {
      const state = JSON.parse(this.storage?.getItem(key) || "null");
      return state && typeof state.id === "string" ? state : null;
    } catch {
      return null;
    }
  }
}
