"""The operator's page ``/ui``: server-rendered views of the remediation history, behind the token."""

from kubernaut.contextapi.ui.routes import UI_ROUTES

__all__ = ["UI_ROUTES"]
