"""Field validators of the MANO configurations, for `huggingface_hub.dataclasses.strict`: they run at init and on
every assignment, and their errors name the field and the value."""

from huggingface_hub.dataclasses import as_validated_field


def at_least(minimum: int | float):
    """A field whose value must be >= `minimum` (None allowed where the field's type allows it)."""

    @as_validated_field
    def validator(value) -> None:
        if value is not None and not isinstance(value, str) and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value!r}")

    return validator


def above(minimum: float):
    """A field whose value must be > `minimum`."""

    @as_validated_field
    def validator(value) -> None:
        if not value > minimum:
            raise ValueError(f"must be > {minimum}, got {value!r}")

    return validator


__all__ = ["above", "at_least"]
