"""`python -m serveplan.cli ...` = the `serveplan` command."""

import sys

from serveplan.cli import plan_main

sys.exit(plan_main())
