"""Throughput of the encrypted object format, single-threaded.

    python -m bench.crypto [--mib 256] [--rounds 3] [--segment-size 65536]

Encrypts and decrypts an in-memory object (a 1 MiB random block repeated) through
``vault.crypto``'s streaming API, fed in 1 MiB chunks, and compares with a baseline measured in
the same run: raw AES-256-GCM single-shot encryption of the same bytes in segment-sized calls.
Rounds are interleaved so that frequency scaling and noisy neighbours hit every line alike; the
best round is reported. Self-contained: depends on nothing else under ``bench/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator

# The one AES-GCM import outside vault/crypto.py, on purpose: the raw cipher is the yardstick.
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import crypto

MIB = 1024 * 1024
CHUNK = MIB


def _chunks(blob: memoryview, size: int) -> Iterator[memoryview]:
    for start in range(0, len(blob), size):
        yield blob[start : start + size]


def _drain(pieces: Iterator[bytes]) -> int:
    total = 0
    for piece in pieces:
        total += len(piece)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crypto", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mib", type=int, default=256, help="object size in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--segment-size", type=int, default=crypto.DEFAULT_SEGMENT_SIZE, help="bytes (64 KiB)"
    )
    args = parser.parse_args(argv)
    size = args.mib * MIB
    segment = args.segment_size

    block = os.urandom(MIB)
    plaintext = block * args.mib  # one immutable buffer: chunks are zero-copy views into it
    data_key = crypto.new_key()
    context = b"bench/v1\x00" + bytes(36)
    key_id = b"bench-key/1"
    ciphertext = b"".join(
        crypto.encrypt_stream(
            data_key, [plaintext], key_id=key_id, context=context, segment_size=segment
        )
    )
    assert len(ciphertext) == crypto.ciphertext_size(size, segment, key_id=key_id)
    plain_view, cipher_view = memoryview(plaintext), memoryview(ciphertext)

    baseline_aead = AESGCM(os.urandom(32))
    nonce = bytes(12)

    def baseline() -> int:
        total = 0
        for start in range(0, size, segment):
            total += len(baseline_aead.encrypt(nonce, plain_view[start : start + segment], None))
        return total

    def encrypt() -> int:
        return _drain(
            crypto.encrypt_stream(
                data_key,
                _chunks(plain_view, CHUNK),
                key_id=key_id,
                context=context,
                segment_size=segment,
            )
        )

    def decrypt() -> int:
        return _drain(crypto.decrypt_stream(data_key, _chunks(cipher_view, CHUNK), context=context))

    cases: dict[str, Callable[[], int]] = {
        "raw AESGCM (baseline)": baseline,
        "encrypt_stream": encrypt,
        "decrypt_stream": decrypt,
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, run in cases.items():
            started = time.perf_counter()
            produced = run()
            elapsed = time.perf_counter() - started
            assert produced >= size, name
            best[name] = min(best[name], elapsed)

    print(
        f"{args.mib} MiB, segment {segment} B, chunks {CHUNK // MIB} MiB, "
        f"best of {args.rounds} interleaved rounds, 1 thread"
    )
    print(f"{'case':<24}{'MB/s':>10}{'GB/s':>8}{'vs raw':>9}")
    base = size / best["raw AESGCM (baseline)"]
    for name, elapsed in best.items():
        rate = size / elapsed
        print(f"{name:<24}{rate / 1e6:>10.0f}{rate / 1e9:>8.2f}{rate / base:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
