"""The Context-API: remediation history for downstream services through an L1 Redis / L2 in-process /
L3 PostgreSQL cache that keeps answering when its Redis is dead or hung."""
