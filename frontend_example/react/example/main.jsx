// The smallest app around <S3Uploader> and <FileList>: sign in, upload, see your files and
// what the content check said. `npm run dev` serves it on http://localhost:5173 and proxies
// /api to the dev stack (see ../README.md).
import { StrictMode, useCallback, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { S3DriveClient } from "../../lib/api.js";
import { describeError } from "../../lib/errors.js";
import { inspectionState } from "../../lib/inspection.js";
import { FileList } from "../src/FileList.jsx";
import { S3Uploader } from "../src/S3Uploader.jsx";

const RECHECK_MS = 5000; // how often the lists look again while a file's content is being checked

const client = new S3DriveClient(); // same origin: vite proxies /api to the API

function SignIn({ onSignedIn }) {
  const [error, setError] = useState("");
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    try {
      await client.login(form.get("username"), form.get("password"));
      onSignedIn();
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  return (
    <form onSubmit={submit}>
      <label htmlFor="username">Username</label>
      <input id="username" name="username" autoComplete="username" required />
      <label htmlFor="password">Password</label>
      <input id="password" name="password" type="password" autoComplete="current-password" required />
      <button type="submit">Sign in</button>
      <p role="alert">{error}</p>
    </form>
  );
}

/** The folder's files and the ones the content check refused, looked at again while checks run. */
function useFiles(folder, signedIn) {
  const [lists, setLists] = useState({ files: [], refused: [], error: "" });
  const refresh = useCallback(async () => {
    try {
      const [files, refused] = await Promise.all([
        client.listFiles({ folder }),
        client.listFiles({ folder, status: "rejected" }),
      ]);
      setLists({ files: files.items, refused: refused.items, error: "" });
    } catch (failure) {
      setLists((current) => ({ ...current, error: describeError(failure) }));
    }
  }, [folder]);
  useEffect(() => {
    if (signedIn) refresh();
  }, [signedIn, refresh]);
  const checking = lists.files.some((file) => inspectionState(file) === "pending");
  useEffect(() => {
    if (!checking) return undefined;
    const timer = setTimeout(refresh, RECHECK_MS);
    return () => clearTimeout(timer);
  }, [checking, lists, refresh]);
  return [lists, refresh];
}

function App() {
  const [signedIn, setSignedIn] = useState(client.signedIn);
  const [uploaded, setUploaded] = useState([]);
  const [lists, refresh] = useFiles("from-react", signedIn);
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  return (
    <main>
      <h1>Upload to s3drive</h1>
      <S3Uploader
        client={client}
        folder="from-react"
        onComplete={(results) => {
          setUploaded(results.filter((r) => r.status === "complete").map((r) => r.file.name));
          refresh();
        }}
      />
      {uploaded.length > 0 && <p>Uploaded: {uploaded.join(", ")}</p>}
      <h2>Your files</h2>
      {lists.error && <p role="alert">{lists.error}</p>}
      <FileList client={client} files={lists.files} caption="Files in from-react" />
      {lists.refused.length > 0 && (
        <>
          <h2>Refused by the content check</h2>
          <FileList client={client} files={lists.refused} caption="Refused files in from-react" />
        </>
      )}
    </main>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
