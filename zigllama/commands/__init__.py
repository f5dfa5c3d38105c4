"""Subcommands of the ``zigllama`` command line (see ``zigllama.cli``)."""
