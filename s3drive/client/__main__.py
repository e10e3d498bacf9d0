"""Run the client: python -m s3drive.client ..."""

from .cli import main

raise SystemExit(main())
