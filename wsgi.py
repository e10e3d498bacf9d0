"""WSGI entry point: `gunicorn wsgi:app`."""

import sys

from s3drive import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback; gunicorn then refuses to start.
    print(f"s3drive: configuration error: {error}", file=sys.stderr)
    sys.exit(3)
