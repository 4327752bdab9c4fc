"""gkd_cli: the ``gkd`` command line.

Remote commands (submit, list, status, watch, events, cancel, download, eval) talk to a server
through gkd_client and need only the base install. Commands that run the server stack on this
machine (serve, keys, data, demo) import it inside the command and, when an extra is missing, say
which one to install.
"""
