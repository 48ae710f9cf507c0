"""The framework-neutral core: schema, settings, points, encoder, buffer, writer, collector,
plugins and Prometheus. Nothing here imports a web framework's request handling."""
