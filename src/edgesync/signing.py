"""Proof of origin: every change is signed where it was made and checked on
every host it reaches, however many hops it travelled.

Each node has its own ed25519 key (``signing_key`` in its data directory, made
by ``init``; it never leaves the host). The changes of one origin form a hash
chain: a change carries ``p``, the chain value before it, and the chain value
after it is ``sha256(p || content)``, where ``content`` is the change's
canonical encoding without ``p`` and ``s``. The origin signs that value when it
commits the change (``s``). So a run of consecutive changes of one origin, each
linking to the one before, is proved by the signature on its last change: a
receiver makes one public-key check per run, not per change.

The fleet's public keys come from the config (``[keys]``), from the keys file
the trust role writes (``keys_file``), and, for ``local:`` peers, from the
``signing_key.pub`` beside their database. A change whose origin has no known
key, whose chain is broken or whose signature does not verify is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from .errors import BadInput, EdgesyncError, Refused
from .lazy import lazy

# Loaded by the first key made, read or checked: a command that does none never loads them.
cryptography = lazy("cryptography")
exceptions = lazy("cryptography.exceptions")
serialization = lazy("cryptography.hazmat.primitives.serialization")
ed25519 = lazy("cryptography.hazmat.primitives.asymmetric.ed25519")

DOMAIN = b"edgesync change v1\0"
GENESIS = "A" * 43  # the chain value before an origin's first change (32 zero bytes)
# Canonical unpadded base64url only (the spare bits of the last character zero),
# so a relay cannot store the same value spelt another way.
CHAIN_RE = re.compile(r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\Z")
SIG_RE = re.compile(r"^[A-Za-z0-9_-]{85}[AQgw]\Z")
PUBLIC_RE = re.compile(r"^[A-Za-z0-9+/]{43}=\Z")
# The signed suffix of a canonical change body: ,"p":"<43>","s":"<86>"}
_SUFFIX = len(',"p":"') + 43 + len('","s":"') + 86 + len('"}')


class Forged(Refused):
    """A change whose proof of origin is missing, broken or from an unknown key."""


def library() -> str:
    """The signing library, loaded and made to sign now (its compiled part
    too): a host whose install cannot sign fails ``edgesync status``, which a
    rollout's health check runs, not only its first write."""
    try:
        ed25519.Ed25519PrivateKey.generate().sign(DOMAIN)
        return f"cryptography {cryptography.__version__}"
    except ImportError as exc:
        raise EdgesyncError(
            f"cannot sign: the cryptography library does not load ({exc})"
        ) from None


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_FROM_URLSAFE = str.maketrans("-_", "+/")


def unb64(text: str) -> bytes:
    """base64.urlsafe_b64decode of unpadded text, without its per-call byte
    conversions (the same decoder: binascii's, not strict)."""
    return binascii.a2b_base64((text + "=" * (-len(text) % 4)).translate(_FROM_URLSAFE))


def chain(prev: str, content: str) -> bytes:
    """The chain value after a change: sha256 of the previous value and the content."""
    return chain_of(unb64(prev), content)


def chain_of(prev: bytes, content: str) -> bytes:
    return hashlib.sha256(prev + content.encode("utf-8", "surrogatepass")).digest()


def content_of(body: str) -> str:
    """The signed content of a canonical change body: the body without p and s."""
    return body[:-_SUFFIX] + "}"


def node_of(origin: str) -> str:
    """The node an origin belongs to (an origin is ``NODE`` or ``NODE.INCARNATION``)."""
    return origin.split(".", 1)[0]


# -- keys ------------------------------------------------------------------------


def public_text(key: ed25519.Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public(text: str, where: str) -> ed25519.Ed25519PublicKey:
    if not isinstance(text, str) or not PUBLIC_RE.match(text):
        raise BadInput(f"invalid public key for {where}: {text!r} (expected 44 base64 characters)")
    return ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(text))


class Signer:
    """This node's private key."""

    def __init__(self, key: ed25519.Ed25519PrivateKey):
        self._key = key
        self.public = key.public_key()

    @classmethod
    def load(cls, path: Path) -> Signer:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BadInput(f"no signing key at {path}: run `edgesync init`") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise BadInput(f"signing key {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise BadInput(f"signing key {path} is not an ed25519 key")
        return cls(key)

    @classmethod
    def create(cls, path: Path, node: str) -> Signer:
        """Load the key at ``path``, making it (mode 0600) and its ``.pub`` first if missing."""
        if not path.exists():
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = path.with_name(path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            os.replace(tmp, path)
        signer = cls.load(path)
        pub = path.with_name(path.name + ".pub")
        line = f"{node} {public_text(signer.public)}\n"
        if not pub.exists() or pub.read_text() != line:
            pub.write_text(line)
        return signer

    def sign(self, value: bytes) -> str:
        return b64(self._key.sign(DOMAIN + value))


def _key_lines(path: Path | None) -> list[tuple[str, str]]:
    """The ``NAME BASE64`` lines of a keys file (``#`` comments); a missing file has none."""
    try:
        text = path.read_text() if path is not None else ""
    except FileNotFoundError:
        return []
    out = []
    for num, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise BadInput(f"invalid keys file {path}:{num}: expected `NAME PUBLIC_KEY`")
        out.append((parts[0], parts[1]))
    return out


def read_keys_file(path: Path | None) -> dict[str, str]:
    """Each name's current key."""
    return dict(_key_lines(path))


def retired_path(keys_file: Path | None) -> Path | None:
    """Beside the keys file: the keys the fleet's names signed with before
    (a host made anew under its name has a new key), any number per name. A
    file of its own, so agents of a release without it read the keys file as
    before."""
    return keys_file.with_name(keys_file.name + ".retired") if keys_file is not None else None


def read_retired_file(path: Path | None) -> dict[str, list[str]]:
    """Each name's earlier keys."""
    out: dict[str, list[str]] = {}
    for name, key in _key_lines(path):
        out.setdefault(name, []).append(key)
    return out


class KeyRing:
    """The public keys this node knows, by node name: ``listed()`` reads the
    config's and the keys file's (read again when a name is missing, so a keys
    file the trust role just rewrote counts at once); ``extra`` finds a key
    listed nowhere (a ``local:`` peer's), or returns None."""

    def __init__(
        self,
        own: tuple[str, ed25519.Ed25519PublicKey],
        listed: Callable[[], dict[str, str]],
        extra: Callable[[str], str | None] = lambda name: None,
        retired: Callable[[], dict[str, list[str]]] = dict,
    ):
        self._listed = listed
        self._texts = listed()
        self._keys: dict[str, ed25519.Ed25519PublicKey] = {own[0]: own[1]}
        self._extra = extra
        self._missing: set[str] = set()
        self._retired_texts = retired
        self._retired: dict[str, list[ed25519.Ed25519PublicKey]] | None = None

    def retired(self, node: str) -> list[ed25519.Ed25519PublicKey]:
        """The keys ``node``'s name signed with before its host was made anew:
        they still prove the changes made then (read once, when first needed)."""
        if self._retired is None:
            self._retired = {name: [parse_public(t, name) for t in texts]
                             for name, texts in self._retired_texts().items()}  # fmt: skip
        return self._retired.get(node, [])

    def get(self, node: str) -> ed25519.Ed25519PublicKey | None:
        key = self._keys.get(node)
        if key is None and node not in self._missing:
            text = self._texts.get(node)
            if text is None:
                self._texts = self._listed()
                text = self._texts.get(node) or self._extra(node)
            if text is None:
                self._missing.add(node)  # read again by the next process, not the next change
                return None
            key = self._keys[node] = parse_public(text, node)
        return key

    def knows(self, origin: str) -> bool:
        return self.get(node_of(origin)) is not None


# -- signing and checking changes ------------------------------------------------


def sign_body(signer: Signer, prev: str, content: str) -> tuple[str, bytes]:
    """The canonical body of a fresh change (its content, then p and s) and its
    chain value."""
    value = chain(prev, content)
    return f'{content[:-1]},"p":"{prev}","s":"{signer.sign(value)}"}}', value


def proves(key: ed25519.Ed25519PublicKey, value: object, sig: object) -> bool:
    """True when ``sig`` is ``key``'s signature of the chain value ``value``
    (both as sent: text that may be anything)."""
    if not (isinstance(value, str) and CHAIN_RE.match(value)):
        return False
    if not (isinstance(sig, str) and SIG_RE.match(sig)):
        return False
    try:
        key.verify(unb64(sig), DOMAIN + unb64(value))
    except (exceptions.InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def verify_batch(
    changes: list[dict], bodies: list[str], keys: KeyRing, held: dict[str, int] | None = None
) -> list[bytes]:
    """Check the proof of every change of a batch (already validated, with its
    canonical ``bodies``); raise Forged naming the first change that fails.
    Returns each change's chain value.

    The changes of each origin, in sequence order, are cut into runs, each
    change linking to the one before it (``n`` one higher, ``p`` its chain
    value); the signature on the last change of a run proves the whole run. A
    run the receiver already holds (every change at or below its ``held`` mark)
    is skipped whole, so it needs no proof.
    """
    held = held or {}
    prevs = [unb64(ch["p"]) for ch in changes]
    values = [chain_of(p, content_of(b)) for p, b in zip(prevs, bodies, strict=True)]
    order = sorted(range(len(changes)), key=lambda i: (changes[i]["o"], changes[i]["n"]))
    last: dict[str, int] = {}  # origin -> position of the last change of its open run
    ends: list[int] = []
    for pos in order:
        ch = changes[pos]
        origin = ch["o"]
        before = last.get(origin)
        if before is not None:
            prev = changes[before]
            if not (ch["n"] == prev["n"] + 1 and prevs[pos] == values[before]):
                ends.append(before)  # the run ends; this change starts another
        last[origin] = pos
    ends += last.values()
    for pos in sorted(ends):
        ch = changes[pos]
        if ch["n"] <= held.get(ch["o"], 0):
            continue
        key = keys.get(node_of(ch["o"]))
        if key is None:
            raise Forged(
                f"refused: change {ch['o']}:{ch['n']} comes from an origin with no known "
                f"public key ({node_of(ch['o'])} is not in this node's fleet keys)"
            )
        if not any(proves(k, b64(values[pos]), ch["s"])
                   for k in (key, *keys.retired(node_of(ch["o"])))):  # fmt: skip
            raise Forged(
                f"refused: change {ch['o']}:{ch['n']} does not carry {node_of(ch['o'])}'s "
                "signature (forged or altered on the way)"
            )
    return values
