"""Multipart uploads: streamed to a temporary file while the base64 hash is taken, the same
hash as the JSON field gives; the size limit applies while the part is read."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from rest.upload import Base64Hash


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 100, 4097])
def test_the_hash_of_pieces_is_the_hash_of_the_whole_base64_text(size):
    data = random.Random(size).randbytes(size)
    expected = hashlib.sha256(base64.b64encode(data)).hexdigest()
    for seed in range(5):
        cuts = sorted(random.Random(seed).sample(range(size + 1), min(size + 1, 4)))
        hasher = Base64Hash()
        for start, end in zip([0, *cuts], [*cuts, size], strict=True):
            hasher.update(data[start:end])
        assert hasher.hexdigest() == expected
