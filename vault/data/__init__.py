"""Data files shipped with botvault (the passphrase word list). No code."""
