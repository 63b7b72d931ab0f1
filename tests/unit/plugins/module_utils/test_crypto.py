# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput, CryptoError

CREDENTIALS = {"username": "root", "password": "a1B2c3D4e5", "port": 4444, "version": 183}


@pytest.fixture(scope="module")
def pair():
    return _crypto.generate_key_pair()


@pytest.fixture(scope="module")
def other_pair():
    return _crypto.generate_key_pair()


def miner_encrypt(public_pem, payload):
    """What an SN27 miner does, written with cryptography directly."""
    public_key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return base64.b64encode(public_key.encrypt(payload, oaep)).decode("ascii")


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_round_trip(bits):
    private_pem, public_pem = _crypto.generate_key_pair(bits)
    info = _crypto.encrypt_credentials(public_pem, CREDENTIALS)
    assert len(info) == 4 * ((bits // 8 + 2) // 3)
    assert _crypto.decrypt_credentials(private_pem, info) == CREDENTIALS
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    assert key.key_size == bits
    assert key.public_key().public_numbers().e == 65537


def test_key_formats(pair):
    private_pem, public_pem = pair
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS8, unencrypted
    assert private_pem.rstrip().endswith("-----END PRIVATE KEY-----")
    assert public_pem.startswith("-----BEGIN PUBLIC KEY-----\n")  # SubjectPublicKeyInfo
    assert public_pem.rstrip().endswith("-----END PUBLIC KEY-----")
    assert isinstance(private_pem, str) and isinstance(public_pem, str)
    assert isinstance(serialization.load_pem_public_key(public_pem.encode("ascii")), rsa.RSAPublicKey)


def test_each_pair_is_new(pair, other_pair):
    assert pair[0] != other_pair[0]
    assert pair[1] != other_pair[1]


def test_2048_bit_ciphertext_is_344_base64_chars(pair):
    info = _crypto.encrypt_credentials(pair[1], CREDENTIALS)
    assert len(info) == 344
    assert len(base64.b64decode(info, validate=True)) == 256


@pytest.mark.parametrize("bits", [1024, 2047, 8192, 0, "2048"])
def test_bad_key_size_is_bad_input(bits):
    with pytest.raises(BadInput, match="key size"):
        _crypto.generate_key_pair(bits)


def test_miner_encrypted_credentials_decrypt(pair):
    private_pem, public_pem = pair
    payload = json.dumps({"username": "root", "password": "Zx9Yw8Vu7T", "port": 4444, "version": 190}).encode()
    assert _crypto.decrypt_credentials(private_pem, miner_encrypt(public_pem, payload)) == {
        "username": "root", "password": "Zx9Yw8Vu7T", "port": 4444, "version": 190}


def failure_message(private_pem, info):
    with pytest.raises(CryptoError) as caught:
        _crypto.decrypt_credentials(private_pem, info)
    return caught.value.message


def test_each_fault_has_its_own_message(pair, other_pair):
    private_pem, public_pem = pair
    messages = {
        "empty": failure_message(private_pem, ""),
        "none": failure_message(private_pem, None),
        "base64": failure_message(private_pem, "not base64 at all!"),
        "wrong key": failure_message(private_pem, miner_encrypt(other_pair[1], json.dumps(CREDENTIALS).encode())),
        "not json": failure_message(private_pem, miner_encrypt(public_pem, b"username=root")),
        "not object": failure_message(private_pem, miner_encrypt(public_pem, b"[1, 2]")),
        "missing": failure_message(private_pem, miner_encrypt(public_pem, b'{"username": "root", "port": 4444}')),
    }
    assert messages["empty"] == messages["none"]
    distinct = [messages[key] for key in ("empty", "base64", "wrong key", "not json", "not object", "missing")]
    assert len(set(distinct)) == len(distinct)
    assert "base64" in messages["base64"]
    assert "key" in messages["wrong key"]
    assert "JSON" in messages["not json"]
    assert "password" in messages["missing"] and "version" not in messages["missing"]


def test_missing_keys_are_listed_in_details(pair):
    private_pem, public_pem = pair
    with pytest.raises(CryptoError) as caught:
        _crypto.decrypt_credentials(private_pem, miner_encrypt(public_pem, b'{"username": "root"}'))
    assert caught.value.details["missing"] == ["password", "port"]


def test_credentials_of_an_old_miner_without_version_are_accepted(pair):
    private_pem, public_pem = pair
    payload = b'{"username": "root", "password": "Zx9Yw8Vu7T", "port": 4444}'
    assert _crypto.decrypt_credentials(private_pem, miner_encrypt(public_pem, payload)) == {
        "username": "root", "password": "Zx9Yw8Vu7T", "port": 4444}


def test_truncated_ciphertext_is_a_decrypt_error(pair):
    private_pem, public_pem = pair
    info = _crypto.encrypt_credentials(public_pem, CREDENTIALS)
    truncated = base64.b64encode(base64.b64decode(info)[:-8]).decode("ascii")
    assert "do not decrypt" in failure_message(private_pem, truncated)


def test_non_utf8_plaintext_is_not_json(pair):
    private_pem, public_pem = pair
    assert "not JSON" in failure_message(private_pem, miner_encrypt(public_pem, b"\xff\xfe"))


def test_pkcs1v15_ciphertext_is_refused(pair):
    private_pem, public_pem = pair
    public_key = serialization.load_pem_public_key(public_pem.encode("ascii"))
    info = base64.b64encode(public_key.encrypt(json.dumps(CREDENTIALS).encode(), padding.PKCS1v15())).decode()
    assert "do not decrypt" in failure_message(private_pem, info)


def test_credentials_near_the_oaep_limit(pair):
    # 2048-bit OAEP-SHA256 carries at most 190 bytes of plaintext.
    private_pem, public_pem = pair
    credentials = dict(CREDENTIALS, password="p" * (190 - len(json.dumps(dict(CREDENTIALS, password="")))))
    assert len(json.dumps(credentials)) == 190
    assert _crypto.decrypt_credentials(private_pem, _crypto.encrypt_credentials(public_pem, credentials)) == credentials


def test_prefetched_keys_are_distinct_working_keys_made_ahead():
    keys = _crypto.KeyPrefetch(2048)
    first, second = keys.take(), keys.take()
    assert first.public_pem != second.public_pem
    info = _crypto.encrypt_credentials(second.public_pem, CREDENTIALS)
    assert second.decrypt(info) == CREDENTIALS


def test_a_prefetch_with_a_wrong_size_fails_at_once():
    with pytest.raises(BadInput, match="key size must be one of"):
        _crypto.KeyPrefetch(1024)
