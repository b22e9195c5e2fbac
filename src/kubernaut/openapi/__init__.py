"""OpenAPI 3.1 documents built from the pydantic models the services validate and answer with, and the
routes that serve them (``/openapi.json`` and a self-contained ``/docs`` page: no CDN, no build step)."""

from kubernaut.openapi.routes import docs_routes
from kubernaut.openapi.spec import Operation, Problem, build_spec

__all__ = ["Operation", "Problem", "build_spec", "docs_routes"]
