"""`python -m agentmesh.edge` runs the `agent` CLI."""

import sys

from agentmesh.edge.cli import main

sys.exit(main())
