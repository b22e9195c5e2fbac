"""Operator tools for the Kubernaut services: the local stack, drills, demo, send and benchmarks."""
