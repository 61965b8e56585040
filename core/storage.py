"""One way to read, write and list data: `azfs://account/container/path` blobs and local paths alike.

Blob storage is the local Azurite emulator unless AZURE_STORAGE_CONNECTION_STRING names a real account.
The connection string is a secret: it is never put into messages, logs, reports or MLflow parameters;
`redact` masks it wherever text could carry it.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import typing
from dataclasses import dataclass
from pathlib import Path

from core.config import EMULATOR_ACCOUNT, Config
from core.errors import UserError

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
BLOB_SCHEME = "azfs://"
# Azurite's documented development account key: public, the same for every Azurite install.
EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StorageError(UserError):
    """A storage failure with a message that names the blob or path and says what to do."""


class StorageUnreachable(StorageError):
    pass


class StorageAuthError(StorageError):
    pass


class NotFound(StorageError):
    pass


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    md5: bytes | None = None
    # Local files: their modification time, which stands in for the MD5 that a local listing does not compute.
    modified_ns: int | None = None

    @property
    def fingerprint(self) -> str:
        """What tells this object's content from another's without reading it: the MD5 that blob storage keeps
        (set by `./places upload` and most upload tools), else the size with the modification time or alone."""
        if self.md5:
            return f"md5:{self.md5.hex()}"
        return f"size:{self.size}" + (f",modified:{self.modified_ns}" if self.modified_ns is not None else "")


def is_folder_marker(name: str, metadata: dict) -> bool:
    """Folder markers (Azure portal, Data Lake Gen2 directories) are blobs, but not objects of their folder."""
    return name.endswith("/") or metadata.get("hdi_isfolder") == "true"


def emulator_connection_string(config: Config) -> str:
    host, port = config.services.host, config.storage.emulator_port
    return (f"DefaultEndpointsProtocol=http;AccountName={EMULATOR_ACCOUNT};AccountKey={EMULATOR_KEY};"
            f"BlobEndpoint=http://{host}:{port}/{EMULATOR_ACCOUNT};")


def connection_string(config: Config) -> str:
    return os.environ.get(CONNECTION_STRING_ENV) or emulator_connection_string(config)


def export_connection_string(config: Config) -> None:
    """Put the connection string where Beam's azfs and child processes look for it.

    Beam's BlobStorageIO falls back to this variable, so the secret never travels as a pipeline option
    (which runners log and ship to job services).
    """
    os.environ[CONNECTION_STRING_ENV] = connection_string(config)


def uses_emulator() -> bool:
    return EMULATOR_KEY in os.environ.get(CONNECTION_STRING_ENV, EMULATOR_KEY)


_SECRET_PATTERNS = [
    re.compile(r"(AccountKey=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"([?&]sig=)[^&\s'\"]+", re.IGNORECASE),
    re.compile(r"(--azure_connection_string[= ])[^\s'\"]+"),
]


def redact(text: str) -> str:
    """`text` with account keys, SAS signatures and connection strings masked."""
    secret = os.environ.get(CONNECTION_STRING_ENV)
    if secret:
        text = text.replace(secret, "<connection string hidden>")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Mask secrets in every log line, ours and the libraries' (Azure's HTTP logging prints headers)."""
    root = logging.getLogger()
    redacting = RedactingFilter()
    for handler in root.handlers:
        handler.addFilter(redacting)
    root.addFilter(redacting)
    logging.getLogger("azure").setLevel(logging.WARNING)


def is_blob_uri(uri: str) -> bool:
    return str(uri).startswith(BLOB_SCHEME)


def join(base: str, *parts: str) -> str:
    """Join URI or path segments with single slashes."""
    text = str(base).rstrip("/")
    for part in parts:
        text = f"{text}/{str(part).strip('/')}"
    return text


def parse_blob_uri(uri: str) -> tuple[str, str, str]:
    """azfs://account/container/path -> (account, container, path); path may be empty."""
    rest = uri[len(BLOB_SCHEME):]
    parts = rest.split("/", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise StorageError(f"'{uri}' is not a blob URI: write azfs://<account>/<container>/<path>")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _local_path(uri: str) -> Path:
    return Path(uri[len("file://"):] if str(uri).startswith("file://") else uri).expanduser()


def canonical(uri: str) -> str:
    """One spelling per place: a blob URI without a trailing "/"; a local path absolute, as Storage.list names
    the files under it (no file://, no ~)."""
    return str(uri).rstrip("/") if is_blob_uri(uri) else str(_local_path(uri).absolute())


class Storage:
    """Blob (azfs://) and local file access behind one API. Blob clients are thread-safe; share one Storage."""

    def __init__(self, connection: str | None = None, *, timeout_s: int = 30, retries: int = 3):
        self._connection = connection or os.environ.get(CONNECTION_STRING_ENV)
        self._timeout_s = timeout_s
        self._retries = retries
        self._service = None
        # Blob GETs and listings without the SDK where the credentials allow it (False: they do not); see
        # _SasClient.
        self._sas: "_SasClient | bool | None" = None

    @classmethod
    def from_config(cls, config: Config) -> "Storage":
        return cls(connection_string(config), timeout_s=config.storage.timeout_s, retries=config.storage.retries)

    # --- where we are talking to, without the secret -------------------------------------------------
    @property
    def account(self) -> str:
        match = re.search(r"AccountName=([^;]+)", self._connection or "")
        return match.group(1) if match else "?"

    @property
    def endpoint(self) -> str:
        match = re.search(r"BlobEndpoint=([^;]+)", self._connection or "")
        if match:
            return match.group(1).rstrip("/")
        suffix = re.search(r"EndpointSuffix=([^;]+)", self._connection or "")
        return f"https://{self.account}.blob.{suffix.group(1) if suffix else 'core.windows.net'}"

    def _service_client(self):
        if self._service is None:
            if not self._connection:
                raise StorageAuthError(
                    f"no blob storage credentials: set {CONNECTION_STRING_ENV} for a real account, or run "
                    "`./places services up` and use the emulator defaults")
            from azure.storage.blob import BlobServiceClient, LinearRetry

            try:
                # The SDK's default retry waits 15 s and more between tries; a short linear backoff turns a
                # storage outage into a clear error in seconds, while still riding out a passing blip.
                retry = LinearRetry(backoff=1, random_jitter_range=0.5, retry_total=self._retries)
                self._service = BlobServiceClient.from_connection_string(
                    self._connection, retry_policy=retry, connection_timeout=self._timeout_s,
                    read_timeout=self._timeout_s, connection_data_block_size=1024 * 1024)
            except ValueError:
                raise StorageAuthError(
                    f"{CONNECTION_STRING_ENV} is not a valid Azure Storage connection string "
                    "(expected AccountName=...;AccountKey=...;...)") from None
        return self._service

    def _container(self, uri: str):
        container, path = self._container_and_path(uri)
        return self._service_client().get_container_client(container), path

    def _folder(self, prefix: str) -> tuple[str, str, str]:
        """For listing the blob folder `prefix`: its container, the blob-name prefix of everything in it ("" or
        ending in "/"), and the URI its blob names are relative to."""
        container, path = self._container_and_path(prefix)
        return container, f"{path.rstrip('/')}/" if path else "", prefix[: len(prefix) - len(path)].rstrip("/")

    def _container_and_path(self, uri: str) -> tuple[str, str]:
        account, container, path = parse_blob_uri(uri)
        if account != self.account:
            raise StorageError(
                f"{uri} names storage account '{account}', but the credentials are for account "
                f"'{self.account}': use azfs://{self.account}/... or set {CONNECTION_STRING_ENV} for '{account}'")
        return container, path

    def _translate(self, error: Exception, uri: str) -> StorageError:
        """Azure SDK errors -> StorageError naming the blob and the fix, never the secret."""
        from azure.core import exceptions as azure_errors

        if isinstance(error, (azure_errors.ServiceRequestError, azure_errors.ServiceResponseError,
                              ConnectionError, TimeoutError)):
            return self._unreachable(error, uri)
        return self._refused(uri, getattr(error, "error_code", None) or "", getattr(error, "status_code", None),
                             f"{type(error).__name__}: {error}",
                             authentication=isinstance(error, azure_errors.ClientAuthenticationError),
                             not_found=isinstance(error, azure_errors.ResourceNotFoundError))

    def _unreachable(self, error: Exception, uri: str) -> StorageUnreachable:
        hint = ("start the emulator with `./places services up`" if uses_emulator()
                else f"check the network and {CONNECTION_STRING_ENV}")
        return StorageUnreachable(f"blob storage at {self.endpoint} did not answer while accessing {uri}: "
                                  f"{type(error).__name__}. Is it running? ({hint})")

    def _refused(self, uri: str, code: str, status: int | None, detail: str, *, authentication: bool = False,
                 not_found: bool = False) -> StorageError:
        """The StorageError for an answer that refused a request (Azure's error code and HTTP status)."""
        _, container, _ = parse_blob_uri(uri) if is_blob_uri(uri) else ("", "", "")
        if authentication or status == 403:
            return StorageAuthError(
                f"blob storage refused the credentials for account '{self.account}' while accessing {uri} "
                f"({code or status}): check the account key in {CONNECTION_STRING_ENV}")
        if code == "ContainerNotFound":
            return NotFound(f"container '{container}' does not exist in storage account '{self.account}' "
                            f"(while accessing {uri}): create it, or check the URI")
        if not_found or status == 404:
            return NotFound(f"{uri} does not exist")
        return StorageError(redact(f"blob storage failed on {uri}: {detail}"))

    def _call(self, uri: str, operation: typing.Callable):
        from azure.core.exceptions import AzureError

        try:
            return operation()
        except (AzureError, ConnectionError, TimeoutError) as error:
            raise self._translate(error, uri) from None

    # --- reading ---------------------------------------------------------------------------------------
    def list(self, prefix: str) -> typing.Iterator[ObjectInfo]:
        """Every object under `prefix` (a folder), recursively, in name order; streams, never all in memory."""
        if not is_blob_uri(prefix):
            root = _local_path(prefix)
            if not root.exists():
                raise NotFound(f"{prefix} does not exist")
            for directory, subdirectories, files in os.walk(root):
                subdirectories.sort()
                for name in sorted(files):
                    path = Path(directory) / name
                    status = path.stat()
                    yield ObjectInfo(str(path), status.st_size, modified_ns=status.st_mtime_ns)
            return
        container_name, folder, base = self._folder(prefix)
        sas = self._sas_client()
        if sas is not None:
            yield from sas.list(prefix, container_name, folder, base, self)
            return
        container = self._service_client().get_container_client(container_name)
        pages = self._call(prefix,
                           lambda: container.list_blobs(name_starts_with=folder, include=["metadata"]).by_page())
        while True:
            page = self._call(prefix, lambda: next(pages, None))
            if page is None:
                return
            for blob in self._call(prefix, lambda: list(page)):
                if is_folder_marker(blob.name, blob.metadata or {}):
                    continue
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                yield ObjectInfo(f"{base}/{blob.name}", blob.size, bytes(md5) if md5 else None)

    def list_folders(self, prefix: str) -> list[str]:
        """The immediate sub-folders of `prefix`, as URIs or paths, in name order."""
        if not is_blob_uri(prefix):
            root = _local_path(prefix)
            if not root.is_dir():
                raise NotFound(f"{prefix} does not exist or is not a folder")
            return [str(child) for child in sorted(root.iterdir()) if child.is_dir()]
        container_name, folder, base = self._folder(prefix)
        container = self._service_client().get_container_client(container_name)
        items = self._call(prefix, lambda: list(container.walk_blobs(name_starts_with=folder, delimiter="/")))
        # A marker blob named like `prefix` itself ("raw/", from the Azure portal) is listed too; it is not a
        # sub-folder.
        return [f"{base}/{item.name.rstrip('/')}" for item in items if item.name.endswith("/") and item.name != folder]

    def info(self, uri: str) -> ObjectInfo | None:
        """Size (and MD5, for blobs) of one object, or None where it does not exist."""
        if not is_blob_uri(uri):
            path = _local_path(uri)
            if not path.is_file():
                return None
            status = path.stat()
            return ObjectInfo(str(path), status.st_size, modified_ns=status.st_mtime_ns)
        container, path = self._container(uri)
        try:
            properties = self._call(uri, lambda: container.get_blob_client(path).get_blob_properties())
        except NotFound as error:
            if "container" in str(error):
                raise
            return None
        md5 = properties.content_settings.content_md5
        return ObjectInfo(uri, properties.size, bytes(md5) if md5 else None)

    def exists(self, uri: str) -> bool:
        return self.info(uri) is not None

    def read_bytes(self, uri: str) -> bytes:
        if not is_blob_uri(uri):
            try:
                return _local_path(uri).read_bytes()
            except FileNotFoundError:
                raise NotFound(f"{uri} does not exist") from None
        sas = self._sas_client()
        if sas is not None:
            return sas.read(uri, self)
        container, path = self._container(uri)
        return self._call(uri, lambda: container.get_blob_client(path).download_blob(max_concurrency=1).readall())

    def _sas_client(self) -> "_SasClient | None":
        if self._sas is None:
            self._sas = _SasClient.for_storage(self, self._connection or "") or False
        return self._sas or None

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    # --- writing ---------------------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes, *, content_type: str | None = None) -> None:
        """Write one object whole: readers see the old content or the new, never a part."""
        if not is_blob_uri(uri):
            path = _local_path(uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
                handle.write(data)
            os.replace(handle.name, path)
            return
        from azure.storage.blob import ContentSettings

        container, path = self._container(uri)
        settings = ContentSettings(content_type=content_type, content_md5=bytearray(hashlib.md5(data).digest()))
        # A single Put Blob (no blocks) commits atomically; the SDK uses one for payloads under 64 MiB.
        self._call(uri, lambda: container.get_blob_client(path).upload_blob(
            data, overwrite=True, content_settings=settings, max_concurrency=1))

    def write_text(self, uri: str, text: str) -> None:
        self.write_bytes(uri, text.encode("utf-8"), content_type="text/plain; charset=utf-8")

    def upload_file(self, local_path: Path, uri: str, md5: bytes) -> None:
        """Copy a local file to `uri`, recording its MD5 so later uploads can skip it."""
        if not is_blob_uri(uri):
            target = _local_path(uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local_path, target)
            return
        from azure.storage.blob import ContentSettings

        container, path = self._container(uri)
        settings = ContentSettings(content_md5=bytearray(md5))
        with open(local_path, "rb") as handle:
            self._call(uri, lambda: container.get_blob_client(path).upload_blob(
                handle, overwrite=True, content_settings=settings, max_concurrency=1))

    def copy(self, source: str, target: str) -> None:
        if is_blob_uri(source) != is_blob_uri(target):
            self.write_bytes(target, self.read_bytes(source))
        elif not is_blob_uri(source):
            _local_path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_local_path(source), _local_path(target))
        else:
            source_container, source_path = self._container(source)
            target_container, target_path = self._container(target)
            source_url = source_container.get_blob_client(source_path).url
            # Same account: a server-side copy, which completes synchronously within one account.
            self._call(target, lambda: target_container.get_blob_client(target_path).start_copy_from_url(
                source_url, requires_sync=True))

    def delete(self, uri: str) -> None:
        if not is_blob_uri(uri):
            _local_path(uri).unlink(missing_ok=True)
            return
        container, path = self._container(uri)
        try:
            self._call(uri, lambda: container.delete_blob(path))
        except NotFound as error:
            if "container" in str(error):
                raise

    def delete_prefix(self, prefix: str) -> int:
        """Delete everything under the folder `prefix`; returns how many objects went."""
        if not is_blob_uri(prefix):
            root = _local_path(prefix)
            count = sum(1 for _ in root.rglob("*") if _.is_file()) if root.exists() else 0
            shutil.rmtree(root, ignore_errors=True)
            return count
        count = 0
        for item in list(self.list(prefix)):
            self.delete(item.uri)
            count += 1
        return count

    def ensure_container(self, uri: str) -> None:
        """Create the container that `uri` lives in, if it is a blob URI and the container is missing."""
        if not is_blob_uri(uri):
            return
        from azure.core.exceptions import ResourceExistsError

        container, _ = self._container(uri)

        def create():
            try:
                container.create_container()
            except ResourceExistsError:
                pass

        self._call(uri, create)

    def check_container(self, uri: str) -> None:
        """Raise NotFound naming the container when `uri`'s container is missing."""
        if not is_blob_uri(uri):
            return
        container, _ = self._container(uri)
        if not self._call(uri, container.exists):
            _, name, _ = parse_blob_uri(uri)
            raise NotFound(f"container '{name}' does not exist in storage account '{self.account}' "
                           f"(from {uri}): create it, or check the URI")


# The Blob service version that container_sas signs for: any since 2020-12-06 signs the same fields.
SAS_VERSION = "2022-11-02"


def container_sas(account: str, account_key: str, container: str, permissions: str,
                  expiry: datetime.datetime) -> str:
    """A service SAS for `container` (the query string, without "?"), signed with the account key as Azure
    documents it ("Create a service SAS"), as the SDK's generate_container_sas makes it.

    Made here because the SDK's package takes most of a second to import, in every process that signs: the
    ingestion's conversion processes read through a SAS and import nothing else of the SDK.
    """
    import base64
    import hmac
    import urllib.parse

    signed_expiry = expiry.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    # permissions, start, expiry, resource, identifier, IP, protocol, version, resource type, snapshot time,
    # encryption scope, then five response headers (cache control, disposition, encoding, language, type).
    string_to_sign = "\n".join([permissions, "", signed_expiry, f"/blob/{account}/{container}", "", "", "",
                                SAS_VERSION, "c", "", "", "", "", "", "", ""])
    signature = base64.b64encode(hmac.digest(base64.b64decode(account_key), string_to_sign.encode(), "sha256"))
    return urllib.parse.urlencode({"se": signed_expiry, "sp": permissions, "sv": SAS_VERSION, "sr": "c",
                                   "sig": signature.decode()})


class _SasClient:
    """Blob GETs and listings as plain HTTP requests signed by a read-and-list container SAS, made here from the
    account key (or the connection string's own SAS).

    The SDK spends several times the CPU of the request itself on each GET (its policy pipeline, and a client
    object per blob), and on each listed blob (its XML models), which holds the GIL; ingestion lists and GETs
    every image, so that cost would set its pace. Every other operation goes through the SDK. The SAS is a
    secret: it never leaves this class, and errors name the blob without the query.
    """

    # A fresh SAS well before the old one expires, so a long job never sends an expired one.
    _SAS_LIFETIME = datetime.timedelta(hours=24)
    _SAS_RENEW_BEFORE = datetime.timedelta(hours=1)
    # Blobs per List Blobs page: the service's maximum.
    _LIST_PAGE = 5000

    def __init__(self, endpoint: str, account: str, account_key: str | None, fixed_sas: str | None, timeout_s: int,
                 retries: int):
        import urllib3

        self._endpoint = endpoint
        self._account = account
        self._account_key = account_key
        self._fixed_sas = fixed_sas
        self._tokens: dict[str, tuple[str, datetime.datetime]] = {}
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(
            maxsize=16, timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=urllib3.Retry(total=retries, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504),
                                  allowed_methods=["GET"], raise_on_status=False))

    @classmethod
    def for_storage(cls, storage: Storage, connection: str) -> "_SasClient | None":
        """The client for `storage`'s connection string; None where it holds neither an account key nor a SAS."""
        fields = dict(part.split("=", 1) for part in connection.split(";") if "=" in part)
        account_key, fixed_sas = fields.get("AccountKey"), fields.get("SharedAccessSignature")
        if not (account_key or fixed_sas) or not fields.get("AccountName") and not fields.get("BlobEndpoint"):
            return None
        return cls(storage.endpoint, storage.account, account_key, fixed_sas and fixed_sas.lstrip("?"),
                   storage._timeout_s, storage._retries)

    def _token(self, container: str) -> str:
        if self._fixed_sas:
            return self._fixed_sas
        now = datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            token, expiry = self._tokens.get(container, ("", now))
            if expiry - now < self._SAS_RENEW_BEFORE:
                expiry = now + self._SAS_LIFETIME
                token = container_sas(self._account, self._account_key, container, "rl", expiry)
                self._tokens[container] = token, expiry
            return token

    def _get(self, uri: str, storage: Storage, container: str, path_and_query: str):
        """The response to GET <container>/<path_and_query> (signed); StorageError unless it is a 200."""
        import urllib3

        separator = "&" if "?" in path_and_query else "?"
        url = f"{self._endpoint}/{container}{path_and_query}{separator}{self._token(container)}"
        try:
            response = self._http.request("GET", url)
        except urllib3.exceptions.HTTPError as error:
            raise storage._unreachable(error, uri) from None
        if response.status != 200:
            code = response.headers.get("x-ms-error-code", "")
            raise storage._refused(uri, code, response.status, f"HTTP {response.status} {code}".strip())
        return response

    def read(self, uri: str, storage: Storage) -> bytes:
        import urllib.parse

        container, path = storage._container_and_path(uri)
        return self._get(uri, storage, container, f"/{urllib.parse.quote(path)}").data

    def list(self, prefix: str, container: str, folder: str, base: str,
             storage: Storage) -> typing.Iterator[ObjectInfo]:
        """As Storage.list: every blob of `container` whose name starts with `folder` (Storage._folder of
        `prefix`), in name order, a page at a time (List Blobs)."""
        import base64
        import urllib.parse
        import xml.etree.ElementTree as ElementTree

        marker = ""
        while True:
            query = urllib.parse.urlencode({"restype": "container", "comp": "list", "prefix": folder,
                                            "include": "metadata", "maxresults": self._LIST_PAGE,
                                            **({"marker": marker} if marker else {})})
            page = ElementTree.fromstring(self._get(prefix, storage, container, f"?{query}").data)
            for blob in page.iter("Blob"):
                name = blob.findtext("Name")
                found = blob.find("Metadata")
                metadata = {item.tag.lower(): item.text for item in (found if found is not None else [])}
                if is_folder_marker(name, metadata):
                    continue
                properties = blob.find("Properties")
                md5 = properties.findtext("Content-MD5")
                yield ObjectInfo(f"{base}/{name}", int(properties.findtext("Content-Length")),
                                 base64.b64decode(md5) if md5 else None)
            marker = page.findtext("NextMarker") or ""
            if not marker:
                return
