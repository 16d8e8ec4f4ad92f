"""Changing the passphrase (`botvault passwd`): every record, and every backup, re-sealed
under a fresh data key wrapped by the new passphrase, in one atomic replacement."""

from __future__ import annotations

import os

from . import codec, crypto, fileformat, vault_file
from .errors import FormatError, InvalidInputError, VaultError
from .fileformat import RawRecord
from .save_engine import SavedFile, read_file

__all__ = ["change_passphrase"]


def change_passphrase(file: SavedFile, new_passphrase: str | bytes, *,
                      kdf: crypto.KdfParams | None = None,
                      drop_damaged_backups: bool = False) -> tuple[bytes, list[int]]:
    """Re-key `file`; returns the new data key (the caller adopts it) and the generations
    of damaged backups that were removed.

    Every backup is checked first: a damaged one stops everything (FormatError naming its
    generation) unless `drop_damaged_backups`. A copy of the file taken before this, with
    the old passphrase, opens that copy only: nothing saved afterwards.
    """
    params = kdf or file.header.kdf
    crypto.check_params(params, error=InvalidInputError)
    # New parameters get init's margin; the vault's own already open here.
    crypto.check_machine(params, error=InvalidInputError, limit=crypto.INIT_MAX_SECONDS
                         if kdf is not None else crypto.MAX_UNLOCK_SECONDS)
    secret = crypto.encode_passphrase(new_passphrase)
    with vault_file.lock(file.path):
        file.refresh()
        old_keys = file.require_keys()
        vault_id = file.header.vault_id
        current = read_file(file.path)
        crypto.verify_mac(old_keys.mac, current.authenticated_part, current.tag)
        data_key = os.urandom(crypto.KEY_SIZE)
        keys = codec.Keys.from_data_key(data_key)
        sealer = crypto.Sealer(keys.entry)
        done: dict[RawRecord, RawRecord] = {}
        # Re-sealing decrypts (so authenticates) every record of every file; a record
        # shared by several generations is decrypted and sealed once.
        records = codec.reseal(current.records, old_keys, sealer, vault_id, done)
        good, damaged = _resealed_backups(file, old_keys, sealer, done)
        if damaged and not drop_damaged_backups:
            listed = ", ".join(map(str, damaged))
            raise FormatError(
                f"the backups of generation {listed} are damaged; nothing was changed",
                hint="see them with: botvault restore --list; to remove them while "
                     "changing the passphrase: botvault passwd --drop-damaged-backups")
        header = codec.new_header(secret, data_key, params, vault_id=vault_id,
                                  generation=file.next_generation())
        # The file being replaced becomes a backup too, under the new key like the rest.
        sources = [(current.header.generation, records), *good][:vault_file.KEEP_BACKUPS]
        copies = [(generation, codec.encode(header.with_generation(generation), resealed,
                                            keys)) for generation, resealed in sources]
        data = codec.encode(header, records, keys)
        vault_file.replace_rekeyed(file.path, data, backups=copies,
                              verify=codec.save_verifier(data, records, keys))
        # Committed: from here on nothing may fail. Adopt the new key and records.
        file.rekeyed(keys, sealer, header, data, current.records, records)
    return data_key, damaged


def _resealed_backups(file: SavedFile, old: codec.Keys, sealer: crypto.Sealer,
                      done: dict[RawRecord, RawRecord]
                      ) -> tuple[list[tuple[int, list[RawRecord]]], list[int]]:
    """(generation, records re-sealed) of every backup that verifies under `old`, and the
    generations of those that do not (unreadable, malformed, another vault's, tampered)."""
    vault_id = file.header.vault_id
    good, damaged = [], []
    for generation, path in vault_file.list_backups(file.path):
        try:
            parsed = fileformat.parse(vault_file.read_private(path))
            if (parsed.header.vault_id, parsed.header.generation) != (vault_id, generation):
                raise FormatError("a backup does not match its name")
            crypto.verify_mac(old.mac, parsed.authenticated_part, parsed.tag)
            resealed = codec.reseal(parsed.records, old, sealer, vault_id, done)
        except (VaultError, OSError):
            damaged.append(generation)
            continue
        good.append((generation, resealed))
    return good, sorted(damaged)
