// What an app does with stock Uppy: add files and upload them with @uppy/aws-s3. Nothing
// else: no size in the meta, no call to s3drive after the uploads (s3drive confirms a form
// upload when S3 redirects the browser to it, and a multipart one at complete).
const MIB = 1024 * 1024

/** Deterministic bytes for a file; tests/test_uppy_browser.py computes the same ones. */
export function fileBytes(size, seed) {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed * 17 + (i >> 10)) & 0xff
  return bytes
}

export async function run(Uppy, AwsS3, config, pluginOptions) {
  const uppy = new Uppy({ id: `uppy-${Date.now()}` })
  uppy.use(AwsS3, {
    ...pluginOptions,
    shouldUseMultipart: (file) => file.size > 10 * MIB,
  })
  const succeeded = []
  const failed = []
  uppy.on('upload-success', (file, response) => {
    succeeded.push({
      name: file.name,
      size: file.size,
      key: response.body.key,
      location: response.uploadURL,
    })
  })
  uppy.on('upload-error', (file, error) => {
    failed.push({ name: file?.name, error: String(error?.message || error) })
  })
  for (const spec of config.files) {
    const data = new Blob([fileBytes(spec.size, spec.seed)], { type: spec.type })
    uppy.addFile({ name: spec.name, type: spec.type, data, source: 'test' })
  }
  await uppy.upload()
  uppy.destroy()
  return { succeeded, failed }
}
