"""`python -m ectf_action` is the `ectf-action` command."""

from ectf_action.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
