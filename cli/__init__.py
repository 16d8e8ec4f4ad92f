"""The `botvault` command-line front end."""

# One module, one copy (see botvault/__init__.py): cli/ is the package `botvault.cli`.
if __name__ != "botvault.cli":
    raise ImportError(f"import botvault.cli, not {__name__}: the folder cli/ is the package "
                      "botvault.cli (pip install -e . in the repository)")
