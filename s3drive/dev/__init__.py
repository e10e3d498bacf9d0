"""The dev stack: MiniStack (an embedded S3) and the dev server. Never imported by the server itself."""
