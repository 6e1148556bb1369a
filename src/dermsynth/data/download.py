"""Download HAM10000 from Harvard Dataverse into the layout the reader expects.

Run it as ``dermsynth data download ham10000 --to DIR``; the result is::

    DIR/HAM10000_metadata.csv
    DIR/HAM10000_images_part_1/*.jpg
    DIR/HAM10000_images_part_2/*.jpg

Only Dataverse's public APIs are used, with the standard library: the Native
API lists the dataset's files (ids, sizes, checksums) and the Access API serves
each one. The metadata is stored by Dataverse as an ingested tabular file; its
original CSV is asked for with ``?format=original``, and the listing's checksum
and ``originalFileSize`` describe that original.

A file is written to ``<name>.part`` and renamed only once its size and checksum
match the listing, so a final name always means a verified file. An interrupted
download resumes from the ``.part`` with an HTTP Range request. Archives are
unpacked into a hidden folder that is renamed when complete, so the data root
never holds a half-unpacked folder. Running the command again skips whatever is
already in place, and needs no network when nothing is missing.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from dermsynth._version import __version__
from dermsynth.data.ham10000 import read_ham10000
from dermsynth.errors import DataError, DownloadError

DEFAULT_BASE_URL = "https://dataverse.harvard.edu"
BASE_URL_ENV = "DERMSYNTH_DATAVERSE_URL"
HAM10000_PERSISTENT_ID = "doi:10.7910/DVN/DBW86T"
CHUNK_BYTES = 1 << 20
USER_AGENT = f"dermsynth/{__version__} (+python urllib)"
HINT = (
    f"Check the network connection; to use another Dataverse server pass --base-url "
    f"(or set {BASE_URL_ENV}); or download HAM10000_images_part_1.zip, "
    f"HAM10000_images_part_2.zip and HAM10000_metadata by hand from "
    f"https://doi.org/10.7910/DVN/DBW86T and unpack the zips into the folder that holds the metadata."
)


@dataclass(frozen=True)
class Part:
    """One file of the dataset and where it ends up under the data root."""

    stem: str
    """Name on the server without its suffix (the metadata is ``.tab`` or has none)."""
    save_as: str
    """File name under the data root while (or, for the metadata, after) downloading."""
    extract_to: str | None = None
    """Folder under the data root that an archive is unpacked into; None: not an archive."""


HAM10000_PARTS: tuple[Part, ...] = (
    Part("HAM10000_metadata", "HAM10000_metadata.csv"),
    Part("HAM10000_images_part_1", "HAM10000_images_part_1.zip", "HAM10000_images_part_1"),
    Part("HAM10000_images_part_2", "HAM10000_images_part_2.zip", "HAM10000_images_part_2"),
)


@dataclass(frozen=True)
class RemoteFile:
    """A file of a Dataverse dataset, as the file listing describes it."""

    file_id: int
    name: str
    """Name of the bytes that ``url`` serves (the original's name for tabular files)."""
    url: str
    size_bytes: int | None
    """Expected size, or None when the listing does not give it."""
    checksum: tuple[str, str] | None
    """(hashlib algorithm, lowercase hex digest), or None when the listing has none."""


def resolve_base_url(base_url: str | None = None) -> str:
    """The argument, else $DERMSYNTH_DATAVERSE_URL, else Harvard Dataverse; no trailing slash."""
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"{url!r} is not an http(s) URL; pass a Dataverse server such as {DEFAULT_BASE_URL}")
    return url


def open_url(url: str, timeout_s: float, range_start: int = 0) -> http.client.HTTPResponse | None:
    """GET ``url``, from byte ``range_start`` on when it is positive.

    Returns None when the server cannot serve that range (HTTP 416); raises
    :class:`DownloadError` naming the URL for any other failure.
    """
    headers = {"User-Agent": USER_AGENT}
    if range_start > 0:
        headers["Range"] = f"bytes={range_start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and range_start > 0:
            return None
        detail = server_message(e)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{detail}. {HINT}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"could not reach {url} ({e.reason}). {HINT}") from None
    except (OSError, http.client.HTTPException) as e:  # timeouts, resets, malformed answers
        raise DownloadError(f"could not reach {url} ({str(e) or type(e).__name__}). {HINT}") from None


def server_message(error: urllib.error.HTTPError) -> str:
    """Dataverse's own explanation from an error body (``{"status": "ERROR", "message": ...}``)."""
    try:
        body = json.loads(error.read(64 * 1024) or b"null")
    except (ValueError, OSError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f" ({message})" if isinstance(message, str) and message else ""


def list_dataset_files(
    base_url: str, persistent_id: str, timeout_s: float = 60, version: str = ":latest"
) -> list[RemoteFile]:
    """Files of a dataset version, from ``GET /api/datasets/:persistentId/versions/{version}/files``."""
    query = urllib.parse.urlencode({"persistentId": persistent_id}, safe=":/")
    url = f"{base_url}/api/datasets/:persistentId/versions/{version}/files?{query}"
    response = open_url(url, timeout_s)
    assert response is not None
    try:
        with response:
            raw = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(f"could not read {url} ({str(e) or type(e).__name__}). {HINT}") from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise DownloadError(f"{url}: the answer is not JSON; is {base_url} a Dataverse server?") from None
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise DownloadError(f"{url}: the answer has no 'data' list of files; is {base_url} a Dataverse server?")
    return [remote_file(base_url, entry, url) for entry in entries if isinstance(entry, dict)]


def remote_file(base_url: str, entry: dict, listing_url: str = "the file listing") -> RemoteFile:
    """Read one listing entry (``{"label": ..., "dataFile": {...}}``).

    For an ingested tabular file the listing's ``filename``/``filesize`` describe
    Dataverse's ``.tab`` rendering, while ``originalFileName``/``originalFileSize``
    and the checksum describe the uploaded original, which is what we download.
    """
    data_file = entry.get("dataFile")
    if not isinstance(data_file, dict) or not isinstance(data_file.get("id"), int):
        raise DownloadError(f"{listing_url}: an entry has no dataFile id: {json.dumps(entry)[:200]}")
    tabular = bool(data_file.get("tabularData") or data_file.get("originalFileFormat"))
    plain_name = data_file.get("filename") or entry.get("label") or str(data_file["id"])
    url = f"{base_url}/api/access/datafile/{data_file['id']}"
    if tabular:
        name = data_file.get("originalFileName") or plain_name
        size = data_file.get("originalFileSize")
        url += "?format=original"
    else:
        name, size = plain_name, data_file.get("filesize")
    return RemoteFile(
        file_id=data_file["id"],
        name=name,
        url=url,
        size_bytes=size if isinstance(size, int) else None,
        checksum=listed_checksum(data_file),
    )


def listed_checksum(data_file: dict) -> tuple[str, str] | None:
    """``checksum: {type, value}`` (MD5, SHA-1, SHA-256, SHA-512), else the older ``md5`` field."""
    checksum = data_file.get("checksum")
    if isinstance(checksum, dict) and checksum.get("type") and checksum.get("value"):
        algorithm = str(checksum["type"]).lower().replace("-", "")
        if algorithm in hashlib.algorithms_available:
            return algorithm, str(checksum["value"]).lower()
    if data_file.get("md5"):
        return "md5", str(data_file["md5"]).lower()
    return None


def find_parts(files: list[RemoteFile], parts: tuple[Part, ...], listing: str) -> dict[str, RemoteFile]:
    """Match each part to the listed file whose name, without suffix, is the part's stem."""
    by_stem: dict[str, RemoteFile] = {}
    for f in files:
        by_stem.setdefault(f.name.split(".")[0], f)
    missing = [p.stem for p in parts if p.stem not in by_stem]
    if missing:
        names = ", ".join(sorted(f.name for f in files)) or "no files"
        raise DownloadError(f"{listing}: the dataset has no {' or '.join(missing)} (it lists: {names})")
    return {p.stem: by_stem[p.stem] for p in parts}


def file_problem(path: Path, remote: RemoteFile) -> str | None:
    """Why ``path`` does not match the listing (size, then checksum), or None if it does."""
    size = path.stat().st_size
    if remote.size_bytes is not None and size != remote.size_bytes:
        return f"it has {size} bytes, the server lists {remote.size_bytes}"
    if remote.checksum is not None:
        algorithm, expected = remote.checksum
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            return f"its {algorithm} is {digest.hexdigest()}, the server lists {expected}"
    return None


def fetch_file(remote: RemoteFile, dest: Path, timeout_s: float = 60, progress: bool = True) -> Path:
    """Download ``remote`` to ``dest`` through ``dest.part``, resuming it; verify, then rename.

    A ``dest`` that already matches the listing is kept as it is. A download
    that does not match is deleted and reported; an interrupted one keeps its
    ``.part`` so that the next call resumes it.
    """
    if dest.is_file():
        if file_problem(dest, remote) is None:
            log(f"{dest.name}: already downloaded and verified", progress)
            return dest
        log(f"{dest.name}: does not match the server's listing; downloading it again", progress)
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if remote.size_bytes is not None and have > remote.size_bytes:
        part.unlink()
        have = 0
    if remote.size_bytes is None or have < remote.size_bytes:
        download_to(remote, part, have, timeout_s, progress)
    problem = file_problem(part, remote)
    if problem is not None:
        part.unlink()
        raise DownloadError(
            f"{remote.url}: the download of {remote.name} is corrupt: {problem}. "
            f"The partial file was deleted; run the command again, and if this repeats "
            f"download {remote.name} by hand."
        )
    os.replace(part, dest)
    return dest


def download_to(remote: RemoteFile, part: Path, have: int, timeout_s: float, progress: bool) -> None:
    """Append the rest of ``remote`` to ``part`` (which holds ``have`` bytes), or rewrite it."""
    response = open_url(remote.url, timeout_s, range_start=have)
    if response is None:  # 416: the server cannot continue from there, so start again
        have = 0
        response = open_url(remote.url, timeout_s)
        assert response is not None
    if have and (response.status != 206 or content_range_start(response) != have):
        have = 0  # the server sent the whole file (200), or a range we did not ask for
        if response.status == 206:
            response.close()
            response = open_url(remote.url, timeout_s)
            assert response is not None
    bar = tqdm(
        total=remote.size_bytes,
        initial=have,
        desc=remote.name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        file=sys.stderr,
    )
    reason = ""
    try:
        with response, bar, open(part, "ab" if have else "wb") as f:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                bar.update(len(chunk))
            # read(n) returns b"" when the connection drops early: compare with what was promised.
            if response.length or (remote.size_bytes is not None and f.tell() < remote.size_bytes):
                reason = "the connection closed early"
    except (OSError, http.client.HTTPException) as e:
        reason = str(e) or type(e).__name__
    if reason:
        raise DownloadError(
            f"{remote.url}: the download of {remote.name} stopped after {part.stat().st_size} bytes "
            f"({reason}); run the command again to resume it. {HINT}"
        )


def content_range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a 206 answer, from ``Content-Range: bytes START-END/TOTAL``."""
    value = response.headers.get("Content-Range", "")
    unit, _, spec = value.strip().partition(" ")
    start = spec.split("-", 1)[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def member_parts(name: str, archive: Path) -> tuple[str, ...]:
    """Path parts of a zip member; refuses absolute paths and ``..`` (zip-slip)."""
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
        or name.startswith(("/", "\\"))
        or ".." in parts
        or "\x00" in name
    ):
        raise DownloadError(
            f"{archive}: refusing to unpack member {name!r}, which points outside the target folder; "
            f"the archive is not the expected HAM10000 file"
        )
    return parts


def extract_zip(archive: Path, dest: Path, progress: bool = True) -> Path:
    """Unpack ``archive`` into the new folder ``dest``, all or nothing.

    Members are checked before anything is written, unpacked into a hidden
    sibling folder, then renamed into place. A zip whose files all sit in one
    top folder is unpacked without that extra level.
    """
    if dest.exists():
        raise DownloadError(f"{dest}: already exists; not unpacking {archive.name} over it")
    tmp = dest.with_name(f".{dest.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # left over from an interrupted run
    try:
        with zipfile.ZipFile(archive) as zf:
            members = []
            for info in zf.infolist():  # check every name before writing anything
                parts = member_parts(info.filename, archive)
                if parts and parts[0] != "__MACOSX":  # macOS resource forks are not data
                    members.append((info, parts))
            tmp.mkdir(parents=True)
            for info, parts in tqdm(members, desc=f"unpacking {archive.name}", unit="file",
                                    disable=not progress, file=sys.stderr):
                target = tmp.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        os.replace(root, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise DownloadError(f"{archive}: not a valid zip archive ({e}); delete it and run the command again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def part_done(root: Path, part: Part) -> bool:
    """Whether a part is in its final place (final names are only ever given to complete data)."""
    if part.extract_to is not None:
        return (root / part.extract_to).is_dir()
    return (root / part.save_as).is_file()


def log(message: str, progress: bool) -> None:
    if progress:
        tqdm.write(message, file=sys.stderr)


def download_ham10000(
    to: Path,
    base_url: str | None = None,
    persistent_id: str = HAM10000_PERSISTENT_ID,
    timeout_s: float = 60,
    progress: bool = True,
    keep_archives: bool = False,
) -> Path:
    """Download and unpack HAM10000 into ``to``; return the data root (``to``).

    ``base_url`` defaults to $DERMSYNTH_DATAVERSE_URL, then Harvard Dataverse.
    ``timeout_s`` bounds each network wait (connecting, and each read). The
    zips are deleted once unpacked unless ``keep_archives``. Raises
    :class:`DownloadError` when the server is unreachable or answers with an
    error, when a file does not match its listed size or checksum, when an
    archive is unsafe or broken, and when the result does not read as HAM10000.
    """
    root = Path(to)
    if root.exists() and not root.is_dir():
        raise DownloadError(f"{root}: exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    missing = [p for p in HAM10000_PARTS if not part_done(root, p)]
    if missing:
        base = resolve_base_url(base_url)
        listing = f"{base} dataset {persistent_id}"
        remote = find_parts(list_dataset_files(base, persistent_id, timeout_s), tuple(missing), listing)
        for part in missing:
            path = fetch_file(remote[part.stem], root / part.save_as, timeout_s, progress)
            if part.extract_to is not None:
                extract_zip(path, root / part.extract_to, progress)
    if not keep_archives:
        for part in HAM10000_PARTS:
            if part.extract_to is not None and part_done(root, part):
                (root / part.save_as).unlink(missing_ok=True)
    try:
        index = read_ham10000(root)
    except DataError as e:
        raise DownloadError(f"{root}: the downloaded files do not read as HAM10000: {e}") from e
    log(f"{root}: HAM10000 ready, {len(index)} images", progress)
    return root
