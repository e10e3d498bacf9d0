// Vite serves the example (index.html → example/main.jsx) and runs the Vitest suite.
import { defineConfig } from "vite";

const API = process.env.S3DRIVE_API || "http://127.0.0.1:5000";

export default defineConfig({
  // JSX with React 17+'s automatic runtime, through Vite's own esbuild: no extra plugin.
  esbuild: { jsx: "automatic" },
  // Pre-bundle React's JSX runtime with React itself, so the dev server serves one copy of React.
  optimizeDeps: { include: ["react", "react/jsx-dev-runtime", "react/jsx-runtime", "react-dom/client"] },
  build: {
    // Keep the hashing worker a file of its own: inlined as a data: URL it would run in an opaque origin.
    assetsInlineLimit: (file) => (file.endsWith("hash-worker.js") ? false : undefined),
  },
  server: {
    port: 5173,
    proxy: { "/api": API },
    fs: { allow: [".."] }, // the shared modules (../lib/) live one folder up
  },
  test: {
    environment: "node",
    // Each suite sits beside what it tests: the component in src/, the shared modules in ../lib/.
    include: ["src/**/*.test.{js,jsx}", "../lib/**/*.test.js", "../*.test.js"],
  },
});
