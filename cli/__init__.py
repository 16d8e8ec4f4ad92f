"""The `botvault` command-line front end."""
