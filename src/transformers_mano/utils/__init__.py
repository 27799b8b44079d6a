"""Small helpers shared by the library and its tooling: atomic outputs, the description of the machine, FLOP counts."""

from .flops import count_flops
from .io import OutputExistsError, atomic_directory, atomic_file, atomic_write_text, check_new_output
from .machine import machine_info


__all__ = [
    "OutputExistsError",
    "atomic_directory",
    "atomic_file",
    "atomic_write_text",
    "check_new_output",
    "count_flops",
    "machine_info",
]
