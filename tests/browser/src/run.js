// What an app does with stock Uppy: add files, upload them with @uppy/aws-s3, then confirm
// the uploads with s3drive (a POST form upload ends in S3, so the app reports it).
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
    const id = uppy.addFile({ name: spec.name, type: spec.type, data, source: 'test' })
    // Declares the size to s3drive (Uppy sends meta fields as metadata): needed for form uploads.
    if (spec.declareSize) uppy.setFileMeta(id, { size: spec.size })
  }
  await uppy.upload()
  let confirmed = null
  if (succeeded.length) {
    const response = await fetch(`${config.api}/api/files/confirm_uploads/`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${config.accessToken}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ s3_keys: succeeded.map((upload) => upload.key) }),
    })
    confirmed = await response.json()
  }
  uppy.destroy()
  return { succeeded, failed, confirmed }
}
