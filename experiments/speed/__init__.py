"""Speed studies: attention layers and whole models against image size, profiles, the Darcy training step."""
