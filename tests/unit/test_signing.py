"""Proof of origin, as pure functions: chains, runs, one check per run, keys."""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesync.changes import check_creators, encode
from edgesync.errors import BadInput
from edgesync.signing import (
    GENESIS,
    Forged,
    KeyRing,
    Signer,
    b64,
    proves,
    public_text,
    read_keys_file,
    sign_body,
    verify_batch,
)

RID = "{node}-LON-43AX-K3J9X0QZ-27112026200512"


def chain_of(signer: Signer, origin: str, count: int, start: int = 1, prev: str = GENESIS):
    """``count`` signed changes of ``origin``: (changes, bodies)."""
    changes, bodies = [], []
    for n in range(start, start + count):
        change = {"o": origin, "n": n, "h": f"{n:016d}-0000-{origin}", "t": "pages",
                  "i": RID.format(node=origin.split(".")[0]), "k": "put",
                  "d": {"title": f"t{n}"}}  # fmt: skip
        body, value = sign_body(signer, prev, encode(change))
        prev = b64(value)
        changes.append(json.loads(body))
        bodies.append(body)
    return changes, bodies


class CountingKey:
    """A public key that counts its checks."""

    def __init__(self, key):
        self.key, self.checks = key, 0

    def verify(self, sig, data):
        self.checks += 1
        return self.key.verify(sig, data)


def ring(**signers: Signer):
    keys = {name: CountingKey(s.public) for name, s in signers.items()}
    kr = KeyRing(("ME", Ed25519PrivateKey.generate().public_key()), dict)
    kr._keys.update(keys)
    return kr, keys


@pytest.fixture
def a():
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def b():
    return Signer(Ed25519PrivateKey.generate())


def test_a_run_of_one_origin_costs_one_public_key_check(a, b):
    ca, ba = chain_of(a, "EDGE01", 500)
    cb, bb = chain_of(b, "EDGE02", 300)
    kr, keys = ring(EDGE01=a, EDGE02=b)
    # Interleaved origins still make one run each.
    mixed = [x for pair in zip(ca[:300], cb, strict=True) for x in pair] + ca[300:]
    bodies = [x for pair in zip(ba[:300], bb, strict=True) for x in pair] + ba[300:]
    verify_batch(mixed, bodies, kr)
    assert keys["EDGE01"].checks == 1 and keys["EDGE02"].checks == 1


def test_a_gap_or_a_second_branch_starts_a_run_of_its_own(a):
    changes, bodies = chain_of(a, "EDGE01", 6)
    kr, keys = ring(EDGE01=a)
    picked = [0, 1, 3, 4]  # 3 does not follow 2
    verify_batch([changes[i] for i in picked], [bodies[i] for i in picked], kr)
    assert keys["EDGE01"].checks == 2


@pytest.mark.parametrize("where", [0, 2, 4])
def test_any_altered_change_anywhere_in_a_run_is_caught(a, where):
    changes, bodies = chain_of(a, "EDGE01", 5)
    changes[where] = {**changes[where], "d": {"title": "altered"}}
    bodies[where] = encode(changes[where])
    kr, _keys = ring(EDGE01=a)
    with pytest.raises(Forged, match="EDGE01's signature"):
        verify_batch(changes, bodies, kr)


def test_a_change_signed_by_another_key_is_forged(a, b):
    changes, bodies = chain_of(b, "EDGE01", 2)  # b signs as EDGE01
    kr, _keys = ring(EDGE01=a)
    with pytest.raises(Forged, match=r"EDGE01:2 does not carry EDGE01's signature"):
        verify_batch(changes, bodies, kr)


def test_an_incarnation_is_proved_by_its_nodes_key(a, b):
    changes, bodies = chain_of(a, "EDGE01.43AXK3J9", 3)
    kr, keys = ring(EDGE01=a)
    verify_batch(changes, bodies, kr)
    assert keys["EDGE01"].checks == 1
    changes, bodies = chain_of(b, "EDGE02.43AXK3J9", 1)
    with pytest.raises(Forged, match="no known public key"):
        verify_batch(changes, bodies, kr)


def test_proves_takes_anything_and_answers_yes_only_for_a_real_signature(a, b):
    changes, _bodies = chain_of(a, "EDGE01", 1)
    value = b64(hashlib.sha256(b"").digest())  # a chain value the signature is not for
    assert not proves(a.public, value, changes[0]["s"])
    for bad in (None, 5, "x", "A" * 43 + "!", ["list"]):
        assert not proves(a.public, bad, changes[0]["s"])
        assert not proves(a.public, GENESIS, bad)


def test_creates_are_only_made_in_the_creators_name():
    ok = {"o": "EDGE01.43AXK3J9", "n": 1, "t": "pages", "k": "new",
          "i": RID.format(node="EDGE01")}  # fmt: skip
    check_creators([ok, {**ok, "k": "put", "i": RID.format(node="MASTER01")}])
    with pytest.raises(Forged, match="MASTER01's name"):
        check_creators([{**ok, "i": RID.format(node="MASTER01")}])


def test_the_keys_file_is_read_again_for_a_name_it_lacked(tmp_path, a):
    path = tmp_path / "fleet_keys"
    kr = KeyRing(("ME", a.public), lambda: read_keys_file(path))
    assert kr.get("EDGE01") is None  # no file: no keys
    other = Signer(Ed25519PrivateKey.generate())
    path.write_text(f"# fleet\nEDGE02 {public_text(other.public)}\n")
    assert kr.get("EDGE02") is not None and kr.knows("EDGE02.43AXK3J9")
    path.write_text("EDGE03\n")
    with pytest.raises(BadInput, match="fleet_keys:1"):
        read_keys_file(path)


def test_init_makes_a_private_key_only_its_owner_reads(tmp_path):
    path = tmp_path / "signing_key"
    signer = Signer.create(path, "EDGE01")
    assert path.stat().st_mode & 0o077 == 0
    assert (tmp_path / "signing_key.pub").read_text() == f"EDGE01 {public_text(signer.public)}\n"
    again = Signer.create(path, "EDGE01")  # harmless to repeat: the same key
    assert public_text(again.public) == public_text(signer.public)
    path.write_text("not a key")
    with pytest.raises(BadInput, match="not a PEM private key"):
        Signer.load(path)
