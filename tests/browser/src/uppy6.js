// Uppy 6: @uppy/aws-s3 6.x with `companionEndpoint` (no headers) from POST /api/uppy/session.
import AwsS3 from '@uppy/aws-s3'
import Uppy from '@uppy/core'
import { run } from './run.js'

window.runUppy6 = (config) => run(Uppy, AwsS3, config, { companionEndpoint: config.companionEndpoint })
window.uppyVersions6 = { core: Uppy.VERSION, awsS3: AwsS3.VERSION }
