"""Command-line client and GitHub Action for the eCTF testing server."""

# The one place the version is set: flit reads it for the package metadata, the CLI's
# --version prints it, and tests/test_release.py holds the Dockerfile's label and
# CHANGELOG.md's newest release to it.
__version__ = "1.0.0"
