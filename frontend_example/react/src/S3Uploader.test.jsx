// <S3Uploader> renders labelled controls; its row labels come from lib/format.js (stateText).
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";
import { S3DriveClient } from "../../lib/api.js";
import { MemoryStorage } from "../../lib/fakes.js";
import { S3Uploader, stateLabel } from "./S3Uploader.jsx";

describe("<S3Uploader>", () => {
  it("renders labelled file and folder pickers, buttons and a status region", () => {
    const client = new S3DriveClient({ storage: new MemoryStorage() });
    const html = renderToString(<S3Uploader client={client} />);
    expect(html).toMatch(
      /<label for="([^"]+)-files">Choose files<\/label><input id="\1-files" type="file" multiple=""/,
    );
    expect(html).toContain("Choose a folder");
    expect(html).toContain(">Upload</button>");
    expect(html).toContain(">Cancel all</button>");
    expect(html).toContain('role="status"');
  });

  it("leaves out the folder picker when asked", () => {
    const client = new S3DriveClient({ storage: new MemoryStorage() });
    expect(renderToString(<S3Uploader client={client} allowFolders={false} />)).not.toContain("Choose a folder");
  });

  it("labels rows by state, with the error message of a failed file", () => {
    expect(stateLabel({ state: "uploading" })).toBe("Uploading…");
    expect(stateLabel({ state: "ready", resumable: true })).toBe("Ready: continues the interrupted upload");
    expect(stateLabel({ state: "failed", error: { message: "This type of file is not allowed." } })).toBe(
      "Failed: This type of file is not allowed.",
    );
  });
});
