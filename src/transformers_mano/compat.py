"""Stand-ins for three transformers internals, for the SwinV2 code written next to checkpoints.

`remote_code.py` writes transformers' own SwinV2 modules beside every MANO checkpoint, with their imports of
transformers internals replaced by its public API; the three helpers below have no public home, so the written
code imports them from here instead. They keep the behaviour the SwinV2 forwards rely on.
"""

from __future__ import annotations

import functools

import torch


def torch_int(value):
    """`int(value)`, except a tensor stays a tensor while tracing (so a traced graph keeps the dependency)."""
    if isinstance(value, torch.Tensor) and torch.jit.is_tracing():
        return value.to(torch.int64)
    return int(value)


def can_return_tuple(forward):
    """Return the forward's output as a tuple when `return_dict` (argument, else `config.return_dict`) is False."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        return_dict = kwargs.pop("return_dict", None)
        if return_dict is None:
            return_dict = getattr(getattr(self, "config", None), "return_dict", True)
        output = forward(self, *args, **kwargs)
        return output if return_dict or isinstance(output, tuple) else output.to_tuple()

    return wrapper


def filter_output_hidden_states(forward):
    """Backbones compute every hidden state for their feature maps: run the forward with `output_hidden_states`
    on, then return the hidden states the caller asked for (argument, else `config.output_hidden_states`): none for a
    false value, all for True, and for an index or a list of indices (negative ones counted from the end) those
    only, the others as None, as transformers' backbones do."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        requested = kwargs.get("output_hidden_states", getattr(self.config, "output_hidden_states", False))
        kwargs["output_hidden_states"] = True
        output = forward(self, *args, **kwargs)
        if not requested:
            output = type(output)(**{key: value for key, value in output.items() if key != "hidden_states"})
        elif not isinstance(requested, bool):
            selected = [requested] if isinstance(requested, int) else list(requested)
            count = len(output["hidden_states"])
            keep = {index % count for index in selected if -count <= index < count}
            output["hidden_states"] = tuple(h if i in keep else None for i, h in enumerate(output["hidden_states"]))
        return output

    return wrapper


__all__ = ["can_return_tuple", "filter_output_hidden_states", "torch_int"]
