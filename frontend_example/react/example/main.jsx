// The smallest app around <S3Uploader>: sign in, then upload. `npm run dev` serves it
// on http://localhost:5173 and proxies /api to the dev stack (see ../README.md).
import { StrictMode, useState } from "react";
import { createRoot } from "react-dom/client";
import { S3DriveClient } from "../../lib/api.js";
import { describeError } from "../../lib/errors.js";
import { S3Uploader } from "../src/S3Uploader.jsx";

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

function App() {
  const [signedIn, setSignedIn] = useState(client.signedIn);
  const [uploaded, setUploaded] = useState([]);
  if (!signedIn) return <SignIn onSignedIn={() => setSignedIn(true)} />;
  return (
    <main>
      <h1>Upload to s3drive</h1>
      <S3Uploader
        client={client}
        folder="from-react"
        onComplete={(results) => setUploaded(results.filter((r) => r.status === "complete").map((r) => r.file.name))}
      />
      {uploaded.length > 0 && <p>Uploaded: {uploaded.join(", ")}</p>}
    </main>
  );
}

createRoot(document.getElementById("root")).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
