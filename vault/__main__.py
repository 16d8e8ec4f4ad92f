"""`python -m botvault` runs the command line, exactly as the `botvault` command does."""

from botvault.cli.main import main

main()
