"""The gateway: turns Alertmanager webhooks and Kubernetes Warning events into RemediationRequests."""
