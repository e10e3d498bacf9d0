// <S3Uploader>: pick or drop files (and folders), see each one's progress, speed and
// time left, cancel; big files go multipart and resume after a reload. All upload logic
// and wording is in ../../lib/ (shared with the plain example page); this file only renders.
import { useCallback, useEffect, useId, useMemo, useRef, useState } from "react";
import { droppedItems, pickedItems } from "../../lib/drop.js";
import { describeError } from "../../lib/errors.js";
import { TransferMeter, formatBytes, plural, rateText, stateText } from "../../lib/format.js";
import { DEFAULT_PART_CONCURRENCY } from "../../lib/multipart.js";
import { ResumeStore } from "../../lib/resume-store.js";
import { DEFAULT_FILE_CONCURRENCY, Uploader, countResults, folderOf } from "../../lib/uploader.js";

const FINAL = new Set(["complete", "failed", "cancelled"]);

/** Return the label a row shows for its state. */
export function stateLabel(row) {
  return stateText(row.state, row.error, { resumable: row.resumable });
}

/**
 * Upload files to s3drive straight from the browser.
 *
 * Props: client (an S3DriveClient, signed in), folder (target folder), fileConcurrency,
 * partConcurrency, extra (FileSpec fields for every file, e.g. {tier, tags}), profile (an
 * upload profile's name: sent with every file, whose size and type are checked against its
 * limits before hashing), allowFolders (default true), onComplete(results) after each run, resumeStore.
 */
export function S3Uploader({
  client,
  folder = "",
  fileConcurrency = DEFAULT_FILE_CONCURRENCY,
  partConcurrency = DEFAULT_PART_CONCURRENCY,
  extra = {},
  profile = null,
  allowFolders = true,
  onComplete = () => {},
  resumeStore = null,
}) {
  const id = useId();
  const store = useMemo(() => resumeStore || new ResumeStore(), [resumeStore]);
  const [rows, setRows] = useState([]);
  const [overall, setOverall] = useState(null);
  const [status, setStatus] = useState("");
  const [dragging, setDragging] = useState(false);
  const [running, setRunning] = useState(false);
  const controller = useRef(null);
  const folderInput = useRef(null);

  // webkitdirectory is not a React prop: set it on the element.
  useEffect(() => {
    folderInput.current?.setAttribute("webkitdirectory", "");
  }, []);

  const pick = useCallback(
    (items) => {
      if (controller.current) return;
      setOverall(null);
      setRows(
        items.map(({ file, relativePath }) => ({
          file,
          relativePath,
          state: "ready",
          resumable: Boolean(store.get(file)),
          progress: null,
          meter: new TransferMeter(),
          controller: null,
        })),
      );
      setStatus(items.length ? `${plural(items.length, "file")} ready to upload.` : "");
    },
    [store],
  );

  const update = (index, change) =>
    setRows((current) => current.map((row, i) => (i === index ? { ...row, ...change(row) } : row)));

  const start = async () => {
    if (controller.current || !rows.length) return;
    const todo = rows.map((row, index) => ({ row, index })).filter(({ row }) => row.state !== "complete");
    controller.current = new AbortController();
    const perFile = todo.map(() => new AbortController());
    setRows((current) =>
      current.map((row, i) => {
        const position = todo.findIndex((entry) => entry.index === i);
        return position < 0 ? row : { ...row, controller: perFile[position] };
      }),
    );
    setRunning(true);
    setStatus(`Uploading ${plural(todo.length, "file")}…`);
    const overallMeter = new TransferMeter();
    try {
      const uploader = new Uploader(client, {
        signal: controller.current.signal,
        fileConcurrency,
        partConcurrency,
        extra,
        profile: profile ?? extra.profile ?? null,
        store,
        onState: (i, state, detail) =>
          update(todo[i].index, () => ({ state, error: state === "failed" ? detail : null })),
        onProgress: (i, loaded, total) =>
          update(todo[i].index, (row) => ({ progress: row.meter.update(loaded, total) })),
        onTotalProgress: (loaded, total) => setOverall(overallMeter.update(loaded, total)),
      });
      const results = await uploader.upload(
        todo.map(({ row }, position) => ({
          file: row.file,
          folder: folderOf(row.relativePath, folder),
          signal: perFile[position].signal,
        })),
      );
      const { complete, failed } = countResults(results);
      setStatus(`${complete} uploaded${failed ? `, ${failed} failed` : ""}.`);
      onComplete(results);
    } catch (error) {
      setStatus(describeError(error));
    } finally {
      controller.current = null;
      setRunning(false);
    }
  };

  const onDrop = async (event) => {
    event.preventDefault();
    setDragging(false);
    pick(await droppedItems(event.dataTransfer));
  };

  const filesId = `${id}-files`;
  const foldersId = `${id}-folders`;
  return (
    <div className="s3-uploader">
      <div
        className={`s3-uploader-drop${dragging ? " dragging" : ""}`}
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <p>Drop files or folders here</p>
        <label htmlFor={filesId}>Choose files</label>
        <input
          id={filesId}
          type="file"
          multiple
          disabled={running}
          onChange={(event) => pick(pickedItems(event.target.files))}
        />
        {allowFolders && (
          <>
            <label htmlFor={foldersId}>Choose a folder</label>
            <input
              id={foldersId}
              ref={folderInput}
              type="file"
              multiple
              disabled={running}
              onChange={(event) => pick(pickedItems(event.target.files))}
            />
          </>
        )}
      </div>

      <p className="s3-uploader-buttons">
        <button type="button" onClick={start} disabled={running || !rows.some((row) => row.state !== "complete")}>
          Upload
        </button>
        <button type="button" onClick={() => controller.current?.abort()} disabled={!running}>
          Cancel all
        </button>
      </p>

      {overall && (
        <div className="s3-uploader-overall">
          <progress max={overall.total || 1} value={overall.loaded} aria-label="All files" />
          <span>{rateText(overall)}</span>
        </div>
      )}

      <ul className="s3-uploader-list" aria-label="Files to upload">
        {rows.map((row, index) => {
          const name = row.relativePath || row.file.name;
          return (
            <li key={`${name}-${index}`} className={`state-${row.state}`}>
              <span className="name">{name}</span> <span className="size">{formatBytes(row.file.size)}</span>
              {running && !FINAL.has(row.state) && row.controller && (
                <button type="button" aria-label={`Cancel upload of ${name}`} onClick={() => row.controller.abort()}>
                  Cancel
                </button>
              )}
              <progress
                max={row.progress?.total || row.file.size || 1}
                value={row.state === "complete" ? row.file.size || 1 : row.progress?.loaded || 0}
                aria-label={`Upload progress of ${name}`}
              />
              <span className="state">{stateLabel(row)}</span>
              {row.progress && !FINAL.has(row.state) && <span className="rate"> {rateText(row.progress)}</span>}
            </li>
          );
        })}
      </ul>
      <p role="status" aria-live="polite" className="s3-uploader-status">
        {status}
      </p>
    </div>
  );
}

export default S3Uploader;
