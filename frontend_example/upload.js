// s3drive browser client, in one import: API calls and direct-to-S3 uploads, no DOM.
// Each part is a module of its own in lib/ (the page and <S3Uploader> import those);
// this file gathers their exports for apps that want a single entry point.
//
//   import { S3DriveClient, Uploader } from "./upload.js";
//   const api = new S3DriveClient();            // same origin as the page
//   await api.login("demo", "secret");
//   const results = await new Uploader(api, { onProgress, onState }).upload(fileList);

export * from "./lib/api.js";
export * from "./lib/concurrency.js";
export * from "./lib/drop.js";
export * from "./lib/errors.js";
export * from "./lib/folders.js";
export * from "./lib/format.js";
export * from "./lib/hash.js";
export * from "./lib/icons.js";
export * from "./lib/inspection.js";
export * from "./lib/limits.js";
export * from "./lib/multipart.js";
export * from "./lib/preview.js";
export * from "./lib/resume-store.js";
export * from "./lib/retry.js";
export * from "./lib/shares.js";
export * from "./lib/storage.js";
export * from "./lib/uploader.js";
