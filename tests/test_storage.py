"""core.storage against the real Azurite and the local file system: one API, clear errors, no leaked secrets."""

from __future__ import annotations

import logging

import pytest

from core import storage as storage_module
from core.config import Config
from core.storage import NotFound, Storage, StorageAuthError, StorageError, StorageUnreachable, join


# The blob case reaches Azurite through getfixturevalue, which the fast tier (tests/fast_tier.py) cannot see: hence
# its mark. The local case needs no service, so `./places test --fast` runs it.
@pytest.fixture(params=[pytest.param("blob", marks=pytest.mark.services), "local"])
def storage_and_root(request, tmp_path) -> tuple[Storage, str]:
    """A Storage and a fresh root folder for one test, in an Azurite container or on the local file system."""
    if request.param == "blob":
        return request.getfixturevalue("storage"), join(request.getfixturevalue("container"), "root")
    return Storage.from_config(Config()), str(tmp_path / "root")


def test_write_read_list_copy_delete(storage_and_root: tuple[Storage, str]):
    storage, root = storage_and_root
    storage.write_text(join(root, "a/one.txt"), "one")
    storage.write_bytes(join(root, "a/b/two.bin"), b"\x00\x01")
    storage.write_text(join(root, "c/three.txt"), "three")

    assert storage.read_text(join(root, "a/one.txt")) == "one"
    assert sorted(item.uri for item in storage.list(join(root, "a"))) == [join(root, "a/b/two.bin"),
                                                                         join(root, "a/one.txt")]
    assert [item.size for item in storage.list(join(root, "c"))] == [5]
    assert storage.list_folders(root) == [join(root, "a"), join(root, "c")]

    storage.copy(join(root, "a/one.txt"), join(root, "copy/one.txt"))
    assert storage.read_text(join(root, "copy/one.txt")) == "one"
    storage.delete(join(root, "a/one.txt"))
    assert not storage.exists(join(root, "a/one.txt"))
    assert storage.delete_prefix(join(root, "c")) == 1
    assert list(storage.list(join(root, "copy"))) and storage.info(join(root, "c/three.txt")) is None


def test_blob_listing_carries_md5_and_skips_folder_markers(storage: Storage, container: str):
    storage.write_bytes(join(container, "x/data.bin"), b"abc")
    storage.write_bytes(join(container, "x") + "/empty-folder/", b"")  # what the Azure portal creates for a folder
    blob_service = storage._service_client()
    blob_service.get_blob_client(container.rsplit("/", 1)[1], "x/lake-directory").upload_blob(
        b"", metadata={"hdi_isfolder": "true"})  # how Data Lake Gen2 lists a directory
    items = list(storage.list(join(container, "x")))
    assert [item.uri for item in items] == [join(container, "x/data.bin")]
    assert items[0].md5.hex() == "900150983cd24fb0d6963f7d28e17f72"


def test_listing_goes_through_every_page_and_keeps_names_as_written(storage: Storage, container: str, monkeypatch):
    monkeypatch.setattr(storage_module._SasClient, "_LIST_PAGE", 2)
    names = ["p/a b.jpg", "p/sub/c.jpg", "p/y%20.jpg", "p/z.jpg", "p/\u00e9&\u00fc.png"]
    for name in names:
        storage.write_bytes(join(container, name), name.encode())
    items = list(storage.list(join(container, "p")))
    assert [item.uri for item in items] == [join(container, name) for name in names]
    assert [item.size for item in items] == [len(name.encode()) for name in names]
    assert [storage.read_bytes(item.uri) for item in items] == [name.encode() for name in names]


def test_the_sas_made_without_the_sdk_is_the_sdks():
    import datetime

    from azure.storage.blob import ContainerSasPermissions
    from azure.storage.blob._shared_access_signature import BlobSharedAccessSignature

    expiry = datetime.datetime(2026, 12, 7, 13, 5, 9, tzinfo=datetime.timezone.utc)
    sdk = BlobSharedAccessSignature("someaccount", storage_module.EMULATOR_KEY)
    sdk.x_ms_version = storage_module.SAS_VERSION
    for container, permissions in (("places", "rl"), ("bench-2", "r")):
        assert storage_module.container_sas("someaccount", storage_module.EMULATOR_KEY, container, permissions,
                                            expiry) == sdk.generate_container(
            container, permission=ContainerSasPermissions.from_string(permissions), expiry=expiry)


def test_reading_a_missing_blob_names_it(storage: Storage, container: str):
    with pytest.raises(NotFound, match=f"{join(container, 'nothing.txt')} does not exist"):
        storage.read_bytes(join(container, "nothing.txt"))


def test_missing_container_is_named_with_the_fix(storage: Storage):
    with pytest.raises(NotFound, match="container 'no-such-container' does not exist .* create it"):
        list(storage.list("azfs://devstoreaccount1/no-such-container/raw"))


def test_wrong_account_in_uri_is_explained(storage: Storage):
    with pytest.raises(StorageError,
                       match="names storage account 'other'.*credentials are for account 'devstoreaccount1'"):
        storage.read_bytes("azfs://other/places/x")


def test_wrong_credentials_are_reported_without_the_key(azurite, container: str):
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    connection = storage_module.emulator_connection_string(azurite).replace(storage_module.EMULATOR_KEY, wrong_key)
    for operation in (lambda wrong: list(wrong.list(join(container, "x"))),
                      lambda wrong: wrong.read_bytes(join(container, "x"))):
        with pytest.raises(StorageAuthError) as caught:
            operation(Storage(connection))
        assert "refused the credentials for account 'devstoreaccount1'" in str(caught.value)
        assert wrong_key not in str(caught.value) and "sig=" not in str(caught.value)


def test_reads_with_a_connection_string_that_holds_a_sas_instead_of_the_key(storage: Storage, azurite, container: str):
    import datetime

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    storage.write_bytes(join(container, "a/b c.jpg"), b"pixels")
    _, name, _ = storage_module.parse_blob_uri(container)
    sas = generate_container_sas("devstoreaccount1", name, account_key=storage_module.EMULATOR_KEY,
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
    endpoint = storage_module.Storage(storage_module.emulator_connection_string(azurite)).endpoint
    with_sas = Storage(f"AccountName=devstoreaccount1;BlobEndpoint={endpoint};SharedAccessSignature={sas}")
    assert with_sas.read_bytes(join(container, "a/b c.jpg")) == b"pixels"
    with pytest.raises(NotFound, match="a/nothing.jpg does not exist"):
        with_sas.read_bytes(join(container, "a/nothing.jpg"))


def test_storage_that_does_not_answer_fails_fast_with_the_fix(azurite):
    from tests.fixtures import free_port

    connection = storage_module.emulator_connection_string(azurite).replace(
        f":{azurite.storage.emulator_port}/", f":{free_port()}/")
    with pytest.raises(StorageUnreachable, match=r"did not answer .*\./places services up"):
        Storage(connection, retries=1, timeout_s=2).read_bytes("azfs://devstoreaccount1/places/x")


def test_redaction_masks_keys_in_text_and_logs(caplog):
    text = "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=c2VjcmV0a2V5;EndpointSuffix=core.windows.net"
    assert "c2VjcmV0a2V5" not in storage_module.redact(text)
    assert "sig=abc" not in storage_module.redact("https://x.blob.core.windows.net/c/b?sv=1&sig=abc")
    logger = logging.getLogger("places.test")
    logger.addFilter(storage_module.RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("connecting with %s", text)
    assert "c2VjcmV0a2V5" not in caplog.text and "AccountName=prod" in caplog.text


def test_local_writes_are_atomic_and_leave_no_temporary_files(storage: Storage, tmp_path):
    target = tmp_path / "out" / "manifest.json"
    storage.write_text(str(target), "{}")
    storage.write_text(str(target), '{"v": 2}')
    assert target.read_text() == '{"v": 2}'
    assert [path.name for path in target.parent.iterdir()] == ["manifest.json"]
