"""Experiments of transformers-mano: studies built on the package, kept out of it (see reports/)."""
