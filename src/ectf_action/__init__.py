"""Command-line client and GitHub Action for the eCTF testing server."""

__version__ = "0.1.0"
