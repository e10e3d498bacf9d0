// <FileList>: files as the API lists them, each with its preview and what the server's content
// check says (checking, checked, or refused and why), and a Download button. The words and what
// may be downloaded come from ../../lib/inspection.js (shared with the plain example page);
// this file only renders.
import { useState } from "react";
import { saveFromUrl } from "../../lib/api.js";
import { formatBytes } from "../../lib/format.js";
import { downloadErrorText, fileEntry } from "../../lib/inspection.js";

/**
 * A list of files.
 *
 * Props: files (File objects of the API, e.g. the items of client.listFiles()), client (an
 * S3DriveClient, signed in, for downloads), caption (what the table is, for screen readers),
 * empty (what to say when there are no files).
 */
export function FileList({ files, client, caption = "Files", empty = "No files yet." }) {
  const [status, setStatus] = useState("");
  const [error, setError] = useState("");

  const download = async (file) => {
    setError("");
    try {
      const { url } = await client.downloadUrl(file.id);
      saveFromUrl(url);
      setStatus(`Downloading ${file.file_name}.`);
    } catch (failure) {
      setStatus("");
      setError(downloadErrorText(file, failure));
    }
  };

  return (
    <div className="s3-files">
      <p role="alert" className="s3-files-alert">
        {error}
      </p>
      {files.length === 0 ? (
        <p className="s3-files-empty">{empty}</p>
      ) : (
        <table>
          <caption>{caption}</caption>
          <thead>
            <tr>
              <th scope="col">
                <span className="visually-hidden">Preview</span>
              </th>
              <th scope="col">Name</th>
              <th scope="col">Size</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {files.map((file) => {
              const entry = fileEntry(file);
              return (
                <tr key={file.id}>
                  <td className="thumb">{entry.thumbnail && <img {...entry.thumbnail} />}</td>
                  <td className="name">
                    <span className="file-name">{file.file_name}</span>
                    {entry.text && <span className={`file-check check-${entry.state}`}>{` ${entry.text}`}</span>}
                  </td>
                  <td className="size">{formatBytes(file.size)}</td>
                  <td className="actions">
                    {entry.canDownload && (
                      <button type="button" aria-label={`Download ${file.file_name}`} onClick={() => download(file)}>
                        Download
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <p role="status" aria-live="polite" className="s3-files-status">
        {status}
      </p>
    </div>
  );
}

export default FileList;
