"""Find key pairs in the files people keep them in today: .env files, ccxt and freqtrade JSON.

Each reader returns `Candidate`s: a pair as found, not yet validated (`Vault.add` does
that). The parsers are small and strict: a line they cannot read is an error that names the
file and line, where a lenient parser would skip it and perhaps import the wrong value.
Messages name files, lines and variable names, never a value.

- `.env`: the dialect python-dotenv reads (``export``, single and double quotes, escapes in
  double quotes, ``#`` comments, quoted values over several lines), without variable
  expansion: ``${VAR}`` is kept literally, and the candidate notes it.
- ccxt: ``{"apiKey": ..., "secret": ...}``, or one such object per exchange id.
- freqtrade: ``exchange.key`` / ``exchange.secret`` / ``exchange.name``, with the ``//`` and
  ``/* */`` comments and trailing commas freqtrade's own parser (rapidjson) accepts.
"""

from __future__ import annotations

from .candidate import Candidate
from .envfile import read_env
from .jsonfile import read_ccxt, read_freqtrade
from .textfile import MAX_FILE_BYTES

__all__ = ["MAX_FILE_BYTES", "Candidate", "read_ccxt", "read_env", "read_freqtrade"]
