"""Lambda@Edge source. Only ``handler.py`` is packaged into the function."""
