// Computes SHA-256 off the main thread, so hashing a 100 MiB file does not freeze the page.
// Message in: {id, blob}; out: {id, digest} (base64) or {id, error}.
// Web Crypto has no streaming digest, so the file is read whole (uploader.js only sends
// files up to the multipart threshold here; bigger ones go multipart without a checksum).
// No imports, not even hash.js's base64: a Vite build copies this file as a plain asset,
// where an import would point at nothing.

self.onmessage = async ({ data: { id, blob } }) => {
  try {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
    let binary = "";
    for (let i = 0; i < digest.length; i += 1) binary += String.fromCharCode(digest[i]);
    self.postMessage({ id, digest: btoa(binary) });
  } catch (error) {
    self.postMessage({ id, error: String(error?.message || error) });
  }
};
