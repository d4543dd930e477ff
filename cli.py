"""`python cli.py ...` from a checkout: the same CLI as the installed `harness` command."""

from harness.cli import app

if __name__ == "__main__":
    app()
