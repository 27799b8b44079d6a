"""Darcy flow experiments: data, baseline operators, training with `Trainer`, comparison. Tooling on top of the
library (`transformers_mano`'s models); importing `transformers_mano.physics.baselines` registers the baselines
with the Auto classes."""
