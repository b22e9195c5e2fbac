"""Failure drills: a fault against the running local stack while a steady alert load runs, then proof."""
