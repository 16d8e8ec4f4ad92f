"""Generate the vault test vectors in this folder and their manifest.json.

Run from the repository root with the project installed:

    python tests/data/vault_vectors/generate.py

Every vault here uses the TEST-ONLY cheap KDF (8 KiB, 1 pass, 1 lane), so the files open
only inside `vault._testing.cheap_kdf()`. Salts, keys and nonces are random, so running this
again writes different bytes (and new sha256 sums in the manifest) with the same meaning.
Tampered files are made from valid ones by editing bytes at the offsets of the layout table
at the top of vault/fileformat.py; this script parses that layout itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from botvault._testing import cheap_kdf
from botvault.open_vault import Vault

HERE = Path(__file__).resolve().parent
PASSPHRASE = "botvault test vectors"
# A Kraken-shaped secret: base64 of 64 bytes. Fixed so that fingerprints are stable.
KRAKEN_SECRET = "a2V5cy" * 14 + "a2V5cw=="

HEADER_SIZE = 139
MAC_SIZE = 32
RECORD_HEAD_SIZE = 44
COUNT_AT = 135
PARAMS_AT = 11
GENERATION_AT = 55
SALT_AT = 23


def records_of(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    (count,) = struct.unpack_from(">I", data, COUNT_AT)
    offset, records = HEADER_SIZE, []
    for _ in range(count):
        (length,) = struct.unpack_from(">I", data, offset + 16)
        records.append(data[offset:offset + RECORD_HEAD_SIZE + length])
        offset += RECORD_HEAD_SIZE + length
    if offset != len(data) - MAC_SIZE:
        raise SystemExit("generate.py: a base vault does not match the documented layout")
    return data[:HEADER_SIZE], records, data[offset:]


def join(header: bytes, records: list[bytes], mac: bytes) -> bytes:
    header = header[:COUNT_AT] + struct.pack(">I", len(records)) + header[COUNT_AT + 4:]
    return header + b"".join(records) + mac


def put(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, at, *values)
    return bytes(buf)


def flip(data: bytes, at: int) -> bytes:
    buf = bytearray(data)
    buf[at] ^= 0x01
    return bytes(buf)


def make_vault(work: Path, name: str, passphrase: str, entries: list[tuple[str, str]]
               ) -> tuple[bytes, list[bytes]]:
    """A vault with `entries` (name, exchange); returns its bytes and every generation's."""
    path = work / name / "vault.bv"
    generations = []
    with cheap_kdf() as kdf, Vault.create(path, passphrase, kdf=kdf) as v:
        generations.append(path.read_bytes())
        for entry_name, exchange in entries:
            secret = KRAKEN_SECRET if exchange.startswith("kraken") else f"secret-{entry_name}"
            v.add(entry_name, exchange=exchange, api_key=f"{entry_name}-PUBLIC-KEY",
                  api_secret=secret, general="read-only", withdrawal="none")
            generations.append(path.read_bytes())
        if entries:
            v.edit(entries[0][0], note="edited once")
            generations.append(path.read_bytes())
    return generations[-1], generations


def build(work: Path) -> list[tuple[dict[str, Any], bytes]]:
    two, two_gens = make_vault(work, "two", PASSPHRASE,
                               [("alpha", "kraken-futures"), ("beta", "generic")])
    empty, _ = make_vault(work, "empty", PASSPHRASE, [])
    nfc = unicodedata.normalize("NFC", "caf\u00e9 \u00c5ngstr\u00f6m")
    nfd = unicodedata.normalize("NFD", nfc)
    unicode_vault, _ = make_vault(work, "unicode", nfc, [("gamma", "generic")])
    other, _ = make_vault(work, "other", PASSPHRASE,
                          [("alpha", "kraken-futures"), ("beta", "generic")])

    header, records, mac = records_of(two)
    old_header, old_records, _ = records_of(two_gens[-2])  # before alpha's note was edited
    _, other_records, _ = records_of(other)
    (generation,) = struct.unpack_from(">Q", two, GENERATION_AT)
    first_length_at = HEADER_SIZE + 16

    ok_names = ["alpha", "beta"]
    auth = "AuthenticationError"
    fmt = "FormatError"
    vectors: list[tuple[str, str, str, list[str] | None, bytes, str]] = [
        ("ok_two_entries.bv", PASSPHRASE, "ok", ok_names, two,
         "a valid vault with a kraken-futures and a generic entry (generation 3)"),
        ("ok_empty.bv", PASSPHRASE, "ok", [], empty, "a valid vault with no entries"),
        ("ok_unicode_nfd_passphrase.bv", nfd, "ok", ["gamma"], unicode_vault,
         "created with an NFC passphrase; the manifest gives its NFD form, which must "
         "derive the same key"),
        ("wrong_passphrase.bv", "not the passphrase", auth, None, two,
         "the valid two-entry vault opened with another passphrase"),
        ("mac_flipped.bv", PASSPHRASE, auth, None, flip(two, len(two) - 1),
         "last byte of the MAC flipped"),
        ("salt_flipped.bv", PASSPHRASE, auth, None, flip(two, SALT_AT), "first salt byte flipped"),
        ("generation_changed.bv", PASSPHRASE, auth, None,
         put(two, GENERATION_AT, ">Q", generation + 1), "generation field plus one"),
        ("generation_rolled_back.bv", PASSPHRASE, auth, None,
         put(two, GENERATION_AT, ">Q", generation - 1), "generation field minus one"),
        ("records_swapped.bv", PASSPHRASE, auth, None, join(header, records[::-1], mac),
         "the two records' bytes exchanged"),
        ("record_dropped_count_fixed.bv", PASSPHRASE, auth, None,
         join(header, records[1:], mac), "first record removed and the count set to 1"),
        ("record_duplicated_count_fixed.bv", PASSPHRASE, auth, None,
         join(header, [records[0], *records], mac), "first record twice, count set to 3"),
        ("record_from_other_vault.bv", PASSPHRASE, auth, None,
         join(header, [other_records[0], records[1]], mac),
         "first record replaced by the same-named entry of another vault, same passphrase"),
        ("record_from_older_generation.bv", PASSPHRASE, auth, None,
         join(header, [old_records[0], records[1]], mac),
         "alpha's record replaced by its bytes from the previous generation"),
        ("older_header_newer_body.bv", PASSPHRASE, auth, None,
         join(old_header, records, mac), "previous generation's header on the newest body"),
        ("kdf_params_in_range.bv", PASSPHRASE, auth, None,
         put(two, PARAMS_AT, ">III", 19 * 1024, 2, 1),
         "KDF parameters set to the floor (in range): the KDF runs and the unwrap fails"),
        ("empty_file.bv", PASSPHRASE, fmt, None, b"", "zero bytes"),
        ("bad_magic.bv", PASSPHRASE, fmt, None, b"BOTVAULU" + two[8:], "magic changed"),
        ("version_2.bv", PASSPHRASE, fmt, None, put(two, 8, ">H", 2), "format version 2"),
        ("kdf_id_2.bv", PASSPHRASE, fmt, None, put(two, 10, ">B", 2), "unknown KDF id 2"),
        ("kdf_memory_huge.bv", PASSPHRASE, fmt, None,
         put(two, PARAMS_AT, ">III", 2**32 - 1, 2, 1), "memory 2^32-1 KiB"),
        ("kdf_memory_below_floor.bv", PASSPHRASE, fmt, None,
         put(two, PARAMS_AT, ">III", 19 * 1024 - 1, 2, 1), "memory one KiB below 19 MiB"),
        ("kdf_passes_zero.bv", PASSPHRASE, fmt, None, put(two, PARAMS_AT, ">III", 19 * 1024, 0, 1),
         "zero passes"),
        ("kdf_lanes_zero.bv", PASSPHRASE, fmt, None, put(two, PARAMS_AT, ">III", 19 * 1024, 2, 0),
         "zero lanes"),
        ("truncated_header.bv", PASSPHRASE, fmt, None, two[:100], "cut inside the header"),
        ("truncated_mac.bv", PASSPHRASE, fmt, None, two[:-1], "last byte missing"),
        ("trailing_byte.bv", PASSPHRASE, fmt, None, two + b"\0", "one byte appended"),
        ("count_huge.bv", PASSPHRASE, fmt, None, put(two, COUNT_AT, ">I", 2**32 - 1),
         "record count 2^32-1 in a short file"),
        ("record_length_huge.bv", PASSPHRASE, fmt, None,
         put(two, first_length_at, ">I", 2**32 - 1), "first record's length 2^32-1"),
    ]
    out = []
    for file, passphrase, expect, names, data, comment in vectors:
        doc: dict[str, Any] = {"file": file, "passphrase": passphrase, "expect": expect}
        if names is not None:
            doc["entries"] = names
        doc["sha256"] = hashlib.sha256(data).hexdigest()
        doc["comment"] = comment
        out.append((doc, data))
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="botvault-vectors-"))
    try:
        vectors = build(work)
    finally:
        shutil.rmtree(work)
    for old in HERE.glob("*.bv"):
        old.unlink()
    for doc, data in vectors:
        (HERE / doc["file"]).write_bytes(data)
    manifest = {
        "description": "botvault vault-file test vectors: each file, the passphrase to open it "
                       "with, and the expected outcome (ok with the listed entry names, "
                       "AuthenticationError, or FormatError).",
        "kdf": "TEST-ONLY cheap KDF (8 KiB, 1 pass, 1 lane): open inside "
               "botvault._testing.cheap_kdf()",
        "generator": "tests/data/vault_vectors/generate.py",
        "vectors": [doc for doc, _ in vectors],
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=True) + "\n"
    (HERE / "manifest.json").write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {len(vectors)} vectors to {HERE}\n")


if __name__ == "__main__":
    os.umask(0o022)
    main()
