"""The `top_k_accuracy` evaluate module (the code lives in `top_k_accuracy.py`, as `evaluate.load` expects)."""
