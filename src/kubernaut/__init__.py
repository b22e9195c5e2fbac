"""Kubernaut signal plane: alert-ingestion gateway and remediation-context service."""

__version__ = "0.1.0"
