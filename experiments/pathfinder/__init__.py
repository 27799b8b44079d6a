"""The Pathfinder study: a long-range image task generated here, and the harness that compares models on it."""
