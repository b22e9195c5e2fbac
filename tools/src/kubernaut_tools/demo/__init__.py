"""`kubernaut demo`: a scripted scenario through the real Prometheus -> Alertmanager -> gateway path,
with a failover of the gateway's Redis master in the middle, watched live and proven at the end."""
