"""S3Storage against moto's standalone server on loopback: real HTTP requests, no in-process mocking."""

import socket
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from catalog_service.storage import (
    ALLOWED_EXTS,
    CONTENT_TYPES,
    AssetMissing,
    InvalidKey,
    S3Storage,
    StorageError,
    content_key,
    storage_from_url,
)

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_endpoint():
    """moto's S3 as a real HTTP server on a free loopback port, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Dummy credentials; no real AWS config, profile, endpoint or proxy can leak into a test."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                 "AWS_REGION", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3(moto_endpoint):
    """A plain boto3 client on the moto server, for setting up and inspecting buckets."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing-secret",
    )
    yield client
    client.close()


@pytest.fixture
def bucket(s3):
    """A fresh bucket per test, so tests never see each other's objects."""
    name = f"assets-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def storage(bucket, moto_endpoint):
    return S3Storage(bucket, endpoint_url=moto_endpoint, region=REGION)


@pytest.fixture
def calls(storage):
    """The S3 operations the storage's own client makes, counted through its event hooks."""
    seen = []
    storage._client.meta.events.register(
        "before-call.s3.*", lambda model, **kwargs: seen.append(model.name)
    )
    return seen


def object_names(s3, bucket):
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_round_trip(storage, s3, bucket):
    """put returns the content key; get and exists find the same bytes; no local file."""
    data = b"\x89PNG fake image bytes"
    key = storage.put(data, ext="png")
    assert key == content_key(data, "png")
    assert storage.get(key) == data
    assert storage.exists(key)
    assert storage.open_path(key) is None
    assert object_names(s3, bucket) == [key]


def test_same_bytes_same_key_and_no_second_upload(storage, calls):
    """Storing the same bytes again returns the same key after a HEAD, without a PutObject."""
    first = storage.put(b"same bytes", ext="webp")
    assert calls == ["HeadObject", "PutObject"]
    calls.clear()
    second = storage.put(b"same bytes", ext="webp")
    assert second == first
    assert calls == ["HeadObject"]


def test_different_bytes_different_keys(storage, s3, bucket):
    """Different bytes get different keys, and both objects are kept."""
    a = storage.put(b"one", ext="png")
    b = storage.put(b"two", ext="png")
    assert a != b
    assert object_names(s3, bucket) == sorted([a, b])
    assert storage.get(a) == b"one" and storage.get(b) == b"two"


GOOD = content_key(b"x", "png")
BAD_KEYS = [
    "",
    "../../etc/passwd",
    "sha256/../../secret.png",
    "/" + GOOD,
    GOOD + "\n",
    GOOD.replace(".png", ".exe"),
    GOOD.upper(),
    "sha256/00/00/" + GOOD.rsplit("/", 1)[1],  # fan-out not matching the digest
    GOOD.replace("sha256/", "sha256//"),
    GOOD[:-5] + "%2e.png",
    None,
    b"sha256/aa/bb/" + b"a" * 64 + b".png",
]


@pytest.fixture(scope="module")
def offline_storage():
    """One storage for the many bad-key cases; its endpoint answers nothing, and it is never asked."""
    storage = S3Storage("bucket", "prefix", endpoint_url=f"http://127.0.0.1:{_closed_port()}", region=REGION)
    seen = []
    storage._client.meta.events.register("before-call.s3.*", lambda model, **kwargs: seen.append(model.name))
    return storage, seen


@pytest.mark.parametrize("key", BAD_KEYS)
@pytest.mark.parametrize("method", ["get", "exists", "delete", "open_path"])
def test_bad_keys_rejected_before_any_call(offline_storage, method, key):
    """A malformed or traversal key raises InvalidKey and no request is made."""
    storage, seen = offline_storage
    seen.clear()
    with pytest.raises(InvalidKey):
        getattr(storage, method)(key)
    assert seen == []


def test_get_missing_is_asset_missing(storage):
    """get of a valid key with no object raises AssetMissing (also a KeyError)."""
    key = content_key(b"never stored", "png")
    with pytest.raises(AssetMissing) as info:
        storage.get(key)
    assert isinstance(info.value, KeyError)
    assert key in str(info.value)


def test_delete_is_idempotent(storage):
    """delete removes the object, and deleting it again (or a never-stored key) is fine."""
    key = storage.put(b"to delete", ext="gif")
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)
    storage.delete(content_key(b"never stored", "gif"))
    with pytest.raises(AssetMissing):
        storage.get(key)


def test_exists(storage):
    """exists is False before put and True after."""
    key = content_key(b"maybe", "jpg")
    assert not storage.exists(key)
    assert storage.put(b"maybe", ext="jpg") == key
    assert storage.exists(key)


@pytest.mark.parametrize("ext", sorted(ALLOWED_EXTS))
def test_content_type_stored(storage, s3, bucket, ext):
    """The object is stored with the Content-Type its extension names."""
    key = storage.put(f"bytes for {ext}".encode(), ext=ext)
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == CONTENT_TYPES[ext]


def test_unknown_extension_rejected(storage, calls):
    """put with an extension that is not allowed raises StorageError before any request."""
    with pytest.raises(StorageError):
        storage.put(b"x", ext="exe")
    assert calls == []


def test_prefix_honoured(bucket, moto_endpoint, s3):
    """Objects land under prefix/, and the storage reads them back by their plain key."""
    storage = S3Storage(bucket, "/tenant-1/assets/", endpoint_url=moto_endpoint, region=REGION)
    key = storage.put(b"prefixed", ext="png")
    assert object_names(s3, bucket) == [f"tenant-1/assets/{key}"]
    assert storage.get(key) == b"prefixed"
    assert storage.exists(key)
    assert not S3Storage(bucket, endpoint_url=moto_endpoint, region=REGION).exists(key)
    storage.delete(key)
    assert object_names(s3, bucket) == []


@pytest.mark.parametrize("prefix", ["a/../b", "..", "a//b", "a b", "a\nb", "./x"])
def test_bad_prefix_rejected(prefix):
    """A prefix with traversal, empty segments or odd characters is refused at construction."""
    with pytest.raises(StorageError):
        S3Storage("bucket", prefix, endpoint_url="http://127.0.0.1:9")


def test_storage_from_url_uses_aws_env(monkeypatch, moto_endpoint, s3, bucket):
    """s3://bucket/some/prefix builds an S3Storage whose endpoint comes from AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    storage = storage_from_url(f"s3://{bucket}/some/prefix")
    assert isinstance(storage, S3Storage)
    assert repr(storage) == f"S3Storage('s3://{bucket}/some/prefix')"
    key = storage.put(b"via url", ext="json")
    assert object_names(s3, bucket) == [f"some/prefix/{key}"]
    assert storage.get(key) == b"via url"


def test_storage_from_url_generic_endpoint_variable(monkeypatch, moto_endpoint, s3, bucket):
    """AWS_ENDPOINT_URL works too, and a URL without a prefix stores at the bucket root."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    storage = storage_from_url(f"S3://{bucket}")
    key = storage.put(b"root", ext="png")
    assert object_names(s3, bucket) == [key]


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3://user:secret@bucket/p", "s3://bucket?x=1"])
def test_storage_from_url_bad_bucket(url):
    """An s3 URL without a plain bucket name is a StorageError (credentials never go in the URL)."""
    with pytest.raises(StorageError) as info:
        storage_from_url(url)
    assert "secret" not in str(info.value)


def test_unreachable_endpoint_fails_quickly(monkeypatch):
    """A closed loopback port gives StorageError within a bounded time, without the credentials."""
    storage = S3Storage("bucket", endpoint_url=f"http://127.0.0.1:{_closed_port()}", region=REGION)
    key = content_key(b"x", "png")
    for call in (lambda: storage.put(b"x", ext="png"), lambda: storage.get(key),
                 lambda: storage.exists(key), lambda: storage.delete(key)):
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            call()
        assert time.monotonic() - started < 20
        assert not isinstance(info.value, AssetMissing)
        assert "testing-secret" not in str(info.value)
        assert "EndpointConnectionError" in str(info.value)


def test_missing_bucket_is_storage_error(moto_endpoint):
    """A bucket that does not exist is a StorageError naming the code, not AssetMissing."""
    storage = S3Storage(f"missing-{uuid.uuid4().hex[:8]}", endpoint_url=moto_endpoint, region=REGION)
    with pytest.raises(StorageError) as info:
        storage.put(b"x", ext="png")
    assert "NoSuchBucket" in str(info.value)
    with pytest.raises(StorageError) as info:
        storage.get(content_key(b"x", "png"))
    assert not isinstance(info.value, AssetMissing)


def test_given_client_is_used_and_errors_carry_no_secret(moto_endpoint):
    """A client passed in is used as is; a refused request's message names the object, not the secret."""
    client = boto3.session.Session().client(
        "s3", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="super-secret-value",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    storage = S3Storage(f"missing-{uuid.uuid4().hex[:8]}", "p", client=client)
    assert storage._client is client
    with pytest.raises(StorageError) as info:
        storage.put(b"x", ext="png")
    message = str(info.value)
    assert "super-secret-value" not in message and "testing" not in message
    assert f"s3://{storage.bucket}/p/{content_key(b'x', 'png')}" in message


def test_client_and_endpoint_are_exclusive(s3):
    """A given client cannot be combined with endpoint_url or region."""
    with pytest.raises(TypeError):
        S3Storage("bucket", client=s3, endpoint_url="http://127.0.0.1:9")


def test_uses_timeouts_and_bounded_retries(storage):
    """The client built by S3Storage has connect/read timeouts and bounded standard-mode retries."""
    config = storage._client.meta.config
    assert config.connect_timeout == 5
    assert config.read_timeout == 30
    # botocore turns max_attempts=3 (retries) into total_max_attempts=4 (the first try included).
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_content_types_cover_allowed_exts():
    """Every allowed extension has a Content-Type, jpg as image/jpeg."""
    assert set(CONTENT_TYPES) == ALLOWED_EXTS
    assert CONTENT_TYPES["jpg"] == "image/jpeg"
