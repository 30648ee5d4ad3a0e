"""Shared benchmark machinery: processes on free ports, filled databases and fresh copies, signed
Cal.com webhook bodies, wrk with a body-cycling Lua script, a small open-loop HTTP client, RSS and
CPU readings, and the BENCHMARKS.md writer.

Everything here drives the service from outside (its CLI, its HTTP interface) except filling, which
writes rows with the service's own store functions so 100,000 pending verifications take seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The toolkit lives in kit_*.py (each one concern); scripts keep `import common as c`.
from kit_base import *
from kit_client import *
from kit_load import *
from kit_seed import *
from kit_servers import *
