// Uppy 5: @uppy/aws-s3 5.x with `endpoint` + `headers` (the Bearer token) against s3drive's /uppy.
import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import { run } from './run.js'

window.runUppy5 = (config) =>
  run(Uppy, AwsS3, config, {
    endpoint: `${config.api}/uppy`,
    headers: { Authorization: `Bearer ${config.accessToken}` },
  })
window.uppyVersions5 = { core: Uppy.VERSION, awsS3: AwsS3.VERSION }
