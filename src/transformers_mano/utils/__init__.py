"""Small helpers shared by the library and its tooling: atomic outputs and the description of the machine."""

from .io import OutputExistsError, atomic_directory, atomic_file, atomic_write_text, check_new_output
from .machine import machine_info


__all__ = [
    "OutputExistsError",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "check_new_output",
    "machine_info",
]
