"""Metric modules shipped with the package, loadable offline with `evaluate.load(<folder path>)`."""
