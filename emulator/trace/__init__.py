"""Guest instruction traces: format v1, writer, reader, import and replay."""
