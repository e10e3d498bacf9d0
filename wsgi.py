"""WSGI entry point: `gunicorn wsgi:app`; the task queue's workers: `celery -A wsgi:celery worker`."""

import sys

from s3drive import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    # One clear line instead of a traceback; gunicorn then refuses to start.
    print(f"s3drive: configuration error: {error}", file=sys.stderr)
    sys.exit(3)

# Celery finds the app named `celery` in this module (`celery -A wsgi:celery worker`, `celery -A wsgi:celery beat`).
celery = app.extensions["celery"]
