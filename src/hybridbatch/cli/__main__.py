"""`python -m hybridbatch.cli ...`: the `hybridbatch` command."""

import sys

from hybridbatch.cli import main

sys.exit(main())
