"""The Python SDK and the ``gkd`` command line."""
