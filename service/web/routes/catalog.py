"""Every module that declares /api operations, imported together: the routes and /openapi.json come from here.

A new module of /api operations is added to this import, and nowhere else.
"""

from __future__ import annotations

from service.web.routes import accounts, api, duplicates, evidence, recheck, tokens  # noqa: F401 (importing registers their operations)

API = api.api
