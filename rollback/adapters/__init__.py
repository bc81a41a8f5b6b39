"""One module per external system. Each adapter receives its client in its
constructor, takes and returns our types, and maps its library's errors to
``rollback.errors`` in one place at its edge. Heavy libraries are imported
here, never by the CLI at start-up."""
