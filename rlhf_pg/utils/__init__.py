"""Utilities with no model code: crash-safe io, the artefact cache, the one config loader,
RNG state save/restore, run-folder locking and process-group checks."""
