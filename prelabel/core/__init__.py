"""The domain both sides share: the client (SDK, CLI, formats, quality) and the servers
(services/, the Triton model code) import it; it imports neither. Review bands and
policy files, the label vocabulary, the task registry, box geometry, domain errors and
their status table, and the model supply chain (catalog, lock, cache store)."""
