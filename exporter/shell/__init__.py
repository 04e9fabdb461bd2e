"""The I/O shell: the stream, REST, backfill, the store and its journal, and the HTTP server."""
