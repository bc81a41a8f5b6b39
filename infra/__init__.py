"""The Pulumi program (``__main__.py``) and its components, one ComponentResource per file."""
