// SHA-256 of files as base64 (what S3 checks as x-amz-checksum-sha256), computed in Web
// Workers (hash-worker.js) so that hashing a big file does not freeze the page.

export const HASH_CONCURRENCY = 2;

/** Return the base64 of bytes. */
export function base64(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Return the base64 SHA-256 of a Blob on this thread (reads it whole into memory). */
export async function sha256Base64(blob) {
  return base64(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
}

/**
 * Return hash(blob) → base64 SHA-256, computed in Web Workers (hash-worker.js) so the
 * page stays responsive; on this thread where workers are missing (tests, old hosts).
 * Returns null when Web Crypto is unavailable (plain http on a non-local host): the
 * checksum is optional, so such uploads go without one.
 */
export function createHasher({
  workerUrl = new URL("./hash-worker.js", import.meta.url),
  poolSize = HASH_CONCURRENCY,
} = {}) {
  if (!globalThis.crypto?.subtle) return null;
  if (typeof Worker === "undefined") return sha256Base64;
  const pool = new HashWorkers(workerUrl, poolSize);
  return (blob) => pool.hash(blob);
}

/** At most `size` hash workers, started on first use and reused; this thread takes over if they cannot run. */
class HashWorkers {
  constructor(url, size) {
    this.url = url;
    this.size = size;
    this.idle = [];
    this.waiting = []; // resolvers of hash() calls waiting for a worker
    this.created = 0;
    this.sequence = 0;
    this.broken = false;
  }

  /** Return the base64 SHA-256 of blob, from a worker when one can run. */
  async hash(blob) {
    if (this.broken) return sha256Base64(blob);
    let worker;
    try {
      worker = await this._acquire();
    } catch {
      this.broken = true; // new Worker() refused (a CSP, say): hash on this thread
      return sha256Base64(blob);
    }
    try {
      return await this._ask(worker, blob);
    } finally {
      this._release(worker);
    }
  }

  _acquire() {
    if (this.idle.length) return Promise.resolve(this.idle.pop());
    if (this.created < this.size) {
      this.created += 1;
      return Promise.resolve(new Worker(this.url, { type: "module" }));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  _release(worker) {
    const next = this.waiting.shift();
    if (next) next(worker);
    else this.idle.push(worker);
  }

  _ask(worker, blob) {
    return new Promise((resolve, reject) => {
      const id = ++this.sequence;
      worker.onmessage = ({ data }) => {
        if (data.id !== id) return;
        if (data.error) reject(new Error(data.error));
        else resolve(data.digest);
      };
      worker.onerror = (event) => {
        // The worker itself failed (blocked by a CSP, say): hash on this thread from now on.
        event.preventDefault?.();
        this.broken = true;
        resolve(sha256Base64(blob));
      };
      worker.postMessage({ id, blob });
    });
  }
}
