"""`python -m s3drive.dev`: run the dev stack (what `make run` starts)."""

import sys

from .server import main

sys.exit(main())
