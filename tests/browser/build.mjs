// Bundle stock Uppy 5 and Uppy 6 (core + aws-s3, from npm) for the Playwright test page.
// Each major version is installed under npm aliases (uppy5-core, uppy6-aws-s3, ...);
// esbuild's alias makes every `@uppy/core` / `@uppy/aws-s3` import of a bundle, including
// the plugins' own, resolve to that version.
import * as esbuild from 'esbuild'

for (const version of [5, 6]) {
  await esbuild.build({
    entryPoints: [`src/uppy${version}.js`],
    outfile: `dist/uppy${version}.js`,
    bundle: true,
    format: 'esm',
    target: 'chrome110',
    alias: { '@uppy/core': `uppy${version}-core`, '@uppy/aws-s3': `uppy${version}-aws-s3` },
    logLevel: 'warning',
  })
}
