# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Per-allocation RSA keys and the miner's encrypted credentials (RSA-OAEP, MGF1-SHA256,
# SHA256, no label, standard base64), as SN27 miners produce them.

from __future__ import annotations

import base64
import binascii
import json
import traceback

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    CryptoError,
    MissingLibrary,
)

# Imported at first use (_require): a task that never touches a key does not pay for cryptography.
hashes = serialization = padding = rsa = None

KEY_SIZES = (2048, 3072, 4096)
# Miners before v1.8.0 send no version.
CREDENTIAL_KEYS = ("username", "password", "port")


def _require():
    global hashes, serialization, padding, rsa
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise MissingLibrary("cryptography", traceback.format_exc())


def _oaep():
    return padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class AllocationKey:
    """One allocation's RSA key, kept as a key object: loading it back from PEM with full
    validation costs 45-66 ms, decrypting with the object under 1 ms."""

    def __init__(self, bits=2048):
        _require()
        if bits not in KEY_SIZES:
            raise BadInput("key size must be one of %s, got %s" % (", ".join(map(str, KEY_SIZES)), bits))
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.public_pem = self.private_key.public_key().public_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PublicFormat.SubjectPublicKeyInfo,
        ).decode("ascii")

    @property
    def private_pem(self):
        """The private key as unencrypted PKCS8 PEM text."""
        return self.private_key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        ).decode("ascii")

    def decrypt(self, info):
        return decrypt_credentials(self.private_key, info)


class KeyPrefetch:
    """Allocation keys, the first made ahead in a thread: OpenSSL releases the GIL while it looks
    for primes (50-150 ms for 2048 bits), so it is made while the task asks miners. Later keys
    (a failover) are made when taken: nothing is made that no attempt uses."""

    def __init__(self, bits=2048):
        if bits not in KEY_SIZES:
            raise BadInput("key size must be one of %s, got %s" % (", ".join(map(str, KEY_SIZES)), bits))
        import threading

        self.bits = bits
        self._made = None
        # Daemonic: a task that ends early does not wait for a key nobody takes.
        self._thread = threading.Thread(target=self._make, name="allocation-key", daemon=True)
        self._thread.start()

    def _make(self):
        try:
            self._made = AllocationKey(self.bits)
        except BaseException as exc:  # handed to the caller of take()
            self._made = exc

    def take(self):
        """A new key; raises what making it raised."""
        if self._thread is None:
            return AllocationKey(self.bits)
        self._thread.join()
        self._thread, made = None, self._made
        if isinstance(made, BaseException):
            raise made
        return made


def generate_key_pair(bits=2048):
    """Return (private PKCS8 PEM, public SubjectPublicKeyInfo PEM) as text."""
    key = AllocationKey(bits)
    return key.private_pem, key.public_pem


def encrypt_credentials(public_pem, credentials):
    """What a miner does: JSON-encode, encrypt for public_pem, base64. Used by localnet."""
    _require()
    public_key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    ciphertext = public_key.encrypt(json.dumps(credentials).encode("utf-8"), _oaep())
    return base64.b64encode(ciphertext).decode("ascii")


def _private_key(private):
    """A private key object from a key object or unencrypted PEM text."""
    if isinstance(private, rsa.RSAPrivateKey):
        return private
    try:
        return serialization.load_pem_private_key(private.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, AttributeError):
        raise CryptoError("this allocation's private key is not an unencrypted PEM key")


def decrypt_credentials(private, info):
    """Decrypt a miner's base64 `info` (with a key object or PEM text) into the credentials dict;
    each fault has its own message."""
    _require()
    if not isinstance(info, str) or not info:
        raise CryptoError("the miner returned no encrypted credentials")
    try:
        ciphertext = base64.b64decode(info.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CryptoError("the miner's credentials are not valid base64")
    private_key = _private_key(private)
    try:
        plaintext = private_key.decrypt(ciphertext, _oaep())
    except ValueError:
        raise CryptoError("the miner's credentials do not decrypt with this allocation's key "
                          "(wrong key or not RSA-OAEP-SHA256)")
    try:
        credentials = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CryptoError("the miner's decrypted credentials are not JSON")
    if not isinstance(credentials, dict):
        raise CryptoError("the miner's decrypted credentials are not a JSON object")
    missing = [key for key in CREDENTIAL_KEYS if key not in credentials]
    if missing:
        raise CryptoError("the miner's credentials lack: %s" % ", ".join(missing), missing=missing)
    return credentials
