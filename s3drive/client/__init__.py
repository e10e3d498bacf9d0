"""s3drive-client: a command-line client of the s3drive HTTP API.

`python -m s3drive.client` or the `s3drive-client` console script. Uploads go straight
to S3 with the presigned URLs the API hands out; the API itself never carries bytes.
"""
