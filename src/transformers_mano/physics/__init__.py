"""Darcy flow experiments: data, baseline operators, training with `Trainer`, comparison. Tooling on top of the
library (`transformers_mano`'s models); `import transformers_mano` registers the baselines with the Auto classes."""
