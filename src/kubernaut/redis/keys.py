"""Key naming. Each service prefixes every key it writes; the owner marker is the one shared name."""

OWNER_KEY = "kubernaut:owner"
SHARERS_KEY = "kubernaut:sharers"

GATEWAY = "gateway"
CONTEXT_API = "context-api"
