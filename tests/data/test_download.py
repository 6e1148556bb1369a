"""HAM10000 download against a fake Dataverse on 127.0.0.1 (no other network).

The fake serves the two Dataverse endpoints the downloader uses, in their real
shape: the Native API file listing and the Access API with Range requests and
``format=original`` for the ingested metadata table.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from dermsynth.data import download
from dermsynth.data.download import DownloadError, download_ham10000
from dermsynth.data.ham10000 import read_ham10000

PID = "doi:10.7910/DVN/DBW86T"
ROWS = [  # (lesion_id, image_id, dx, archive)
    ("HAM_0000001", "ISIC_0000001", "nv", 1),
    ("HAM_0000001", "ISIC_0000002", "nv", 1),
    ("HAM_0000002", "ISIC_0000003", "mel", 2),
    ("HAM_0000003", "ISIC_0000004", "bkl", 2),
]


@dataclass
class FakeFile:
    file_id: int
    filename: str
    content: bytes
    """What the Access API serves; for a tabular file, the original (``format=original``)."""
    original_name: str | None = None
    """Set for ingested tabular files: the listing then describes a ``.tab`` plus an original."""
    listed_md5: str | None = None
    """Checksum the listing claims; defaults to the real one."""
    listed_size: int | None = None
    """Size the listing claims; defaults to the real one."""


@dataclass
class FakeDataverse:
    files: list[FakeFile]
    url: str = ""
    ignore_range: bool = False
    cut_after: int | None = None
    """Drop the connection after this many body bytes (the headers still promise all of them)."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path with query, Range header) of every GET."""

    def listing(self) -> dict:
        entries = []
        for f in self.files:
            md5 = f.listed_md5 or hashlib.md5(f.content).hexdigest()
            size = len(f.content) if f.listed_size is None else f.listed_size
            data_file = {
                "id": f.file_id,
                "persistentId": "",
                "filename": f.filename,
                "contentType": "application/zip",
                "filesize": size,
                "storageIdentifier": f"s3://dvn-cloud:{f.file_id:x}",
                "rootDataFileId": -1,
                "md5": md5,
                "checksum": {"type": "MD5", "value": md5},
                "tabularData": False,
                "creationDate": "2018-06-04",
            }
            if f.original_name is not None:
                data_file.update(
                    contentType="text/tab-separated-values",
                    filesize=len(self.tab_rendering(f)),
                    tabularData=True,
                    originalFileFormat="text/csv",
                    originalFormatLabel="Comma Separated Values",
                    originalFileSize=size,
                    originalFileName=f.original_name,
                    UNF="UNF:6:fake==",
                )
            entries.append(
                {"label": f.filename, "restricted": False, "version": 1, "datasetVersionId": 7,
                 "dataFile": data_file}
            )
        return {"status": "OK", "data": entries}

    @staticmethod
    def tab_rendering(f: FakeFile) -> bytes:
        return f.content.replace(b",", b"\t")

    def accessed(self, file_id: int) -> list[str | None]:
        """Range headers of the Access API requests for one file."""
        prefix = f"/api/access/datafile/{file_id}"
        return [rng for path, rng in self.requests if urlsplit(path).path == prefix]


def make_handler(fake: FakeDataverse) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body if fake.cut_after is None else body[: fake.cut_after])

        def do_GET(self) -> None:
            fake.requests.append((self.path, self.headers.get("Range")))
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/api/datasets/:persistentId/versions/:latest/files":
                if query.get("persistentId") != [PID]:
                    body = {"status": "ERROR", "message": f"Dataset with Persistent ID {query} not found."}
                    self.send_body(404, json.dumps(body).encode())
                    return
                body = json.dumps(fake.listing()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if url.path.startswith("/api/access/datafile/"):
                file_id = int(url.path.rsplit("/", 1)[1])
                f = next((f for f in fake.files if f.file_id == file_id), None)
                if f is None:
                    self.send_body(404, b'{"status":"ERROR","message":"File not found"}')
                    return
                original = query.get("format") == ["original"]
                body = f.content if f.original_name is None or original else fake.tab_rendering(f)
                rng = self.headers.get("Range")
                if rng and not fake.ignore_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_body(416, b"", {"Content-Range": f"bytes */{len(body)}"})
                        return
                    headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
                    self.send_body(206, body[start:], headers)
                    return
                self.send_body(200, body)
                return
            self.send_body(404, b"")

    return Handler


def jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (40 * seed % 256, 90, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def metadata_csv() -> bytes:
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    lines += [f"{lesion},{image},{dx},histo,50.0,male,back" for lesion, image, dx, _ in ROWS]
    return ("\n".join(lines) + "\n").encode()


def ham10000_files() -> list[FakeFile]:
    """Part 1 has its JPEGs at the top of the zip, part 2 inside a folder (both occur in the wild)."""
    part_1 = {f"{image}.jpg": jpeg_bytes(i) for i, (_, image, _, n) in enumerate(ROWS) if n == 1}
    part_2 = {f"HAM10000_images_part_2/{image}.jpg": jpeg_bytes(i) for i, (_, image, _, n) in enumerate(ROWS)
              if n == 2}
    return [
        FakeFile(101, "HAM10000_images_part_1.zip", zip_bytes(part_1)),
        FakeFile(102, "HAM10000_images_part_2.zip", zip_bytes(part_2)),
        FakeFile(103, "HAM10000_metadata.tab", metadata_csv(), original_name="HAM10000_metadata"),
        FakeFile(104, "ISIC2018_Task3_Test_Images.zip", zip_bytes({"ISIC_0034524.jpg": jpeg_bytes(9)})),
    ]


@pytest.fixture(autouse=True)
def no_env_base_url(monkeypatch):
    monkeypatch.delenv(download.BASE_URL_ENV, raising=False)


@pytest.fixture
def fake():
    fake = FakeDataverse(ham10000_files())
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def leftovers(root: Path) -> list[str]:
    """Partial downloads and half-unpacked folders under ``root``."""
    return sorted(p.name for p in root.rglob("*") if p.name.endswith((".part", ".partial")))


def test_download_unpacks_into_the_reader_layout(fake, tmp_path):
    root = download_ham10000(tmp_path / "ham", base_url=fake.url + "/", progress=False, timeout_s=5)

    assert root == tmp_path / "ham"
    assert (root / "HAM10000_metadata.csv").read_bytes() == metadata_csv()
    assert sorted(p.name for p in (root / "HAM10000_images_part_1").iterdir()) == [
        "ISIC_0000001.jpg", "ISIC_0000002.jpg"]
    assert sorted(p.name for p in (root / "HAM10000_images_part_2").iterdir()) == [
        "ISIC_0000003.jpg", "ISIC_0000004.jpg"]
    assert not list(root.glob("*.zip")) and leftovers(root) == []
    index = read_ham10000(root)
    assert [r.image_id for r in index.records] == [image for _, image, _, _ in ROWS]
    assert [r.dx for r in index.records] == [dx for _, _, dx, _ in ROWS]
    assert index.open_image(2).size == (8, 6)
    # The metadata is asked for as its original CSV; the unrelated test-set zip is never fetched.
    paths = [path for path, _ in fake.requests]
    assert "/api/access/datafile/103?format=original" in paths
    assert fake.accessed(104) == []
    assert paths[0] == f"/api/datasets/:persistentId/versions/:latest/files?persistentId={PID}"


def test_a_complete_folder_needs_no_network(fake, tmp_path):
    root = download_ham10000(tmp_path / "ham", base_url=fake.url, progress=False)
    assert download_ham10000(root, base_url=closed_port_url(), progress=False, timeout_s=2) == root


def test_verified_archives_are_not_downloaded_again(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_URL_ENV, fake.url)  # base_url=None reads the variable
    root = download_ham10000(tmp_path / "ham", progress=False, keep_archives=True)
    archive = root / "HAM10000_images_part_1.zip"
    assert archive.read_bytes() == fake.files[0].content
    for p in (root / "HAM10000_images_part_1").iterdir():
        p.unlink()
    (root / "HAM10000_images_part_1").rmdir()
    fake.requests.clear()

    download_ham10000(root, progress=False)

    assert fake.accessed(101) == []  # checked against the listing, then only unpacked
    assert len(read_ham10000(root)) == len(ROWS)
    assert not archive.exists()  # unpacked now, and keep_archives is off


def test_resume_sends_a_range_request(fake, tmp_path):
    root = tmp_path / "ham"
    root.mkdir()
    content = fake.files[0].content
    half = len(content) // 2
    (root / "HAM10000_images_part_1.zip.part").write_bytes(content[:half])

    download_ham10000(root, base_url=fake.url, progress=False, keep_archives=True)

    assert fake.accessed(101) == [f"bytes={half}-"]
    assert (root / "HAM10000_images_part_1.zip").read_bytes() == content
    assert leftovers(root) == []
    assert len(read_ham10000(root)) == len(ROWS)


def test_resume_starts_over_when_the_server_ignores_the_range(fake, tmp_path):
    fake.ignore_range = True
    root = tmp_path / "ham"
    root.mkdir()
    content = fake.files[0].content
    (root / "HAM10000_images_part_1.zip.part").write_bytes(b"\xff" * (len(content) // 2))  # not a prefix

    download_ham10000(root, base_url=fake.url, progress=False, keep_archives=True)

    assert fake.accessed(101) == [f"bytes={len(content) // 2}-"]
    assert (root / "HAM10000_images_part_1.zip").read_bytes() == content


def test_interrupted_download_keeps_its_part_and_resumes(fake, tmp_path):
    root = tmp_path / "ham"
    content = fake.files[2].content
    fake.cut_after = 10

    with pytest.raises(DownloadError, match="stopped after 10 bytes .*run the command again to resume"):
        download_ham10000(root, base_url=fake.url, progress=False)
    assert (root / "HAM10000_metadata.csv.part").read_bytes() == content[:10]

    fake.cut_after = None
    download_ham10000(root, base_url=fake.url, progress=False)
    assert fake.accessed(103) == [None, "bytes=10-"]
    assert (root / "HAM10000_metadata.csv").read_bytes() == content


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(DownloadError, match="could not reach .*timed out"):
            download_ham10000(tmp_path / "ham", base_url=url, progress=False, timeout_s=0.3)


def test_checksum_mismatch_deletes_the_part_and_unpacks_nothing(fake, tmp_path):
    fake.files[1].listed_md5 = "0" * 32
    root = tmp_path / "ham"

    with pytest.raises(DownloadError, match=r"HAM10000_images_part_2\.zip is corrupt: its md5 is [0-9a-f]{32}"):
        download_ham10000(root, base_url=fake.url, progress=False)

    assert not (root / "HAM10000_images_part_2").exists()
    assert not (root / "HAM10000_images_part_2.zip").exists()
    assert leftovers(root) == []


def test_size_mismatch_is_reported(fake, tmp_path):
    fake.files[2].listed_size = len(fake.files[2].content) - 5

    with pytest.raises(DownloadError, match="HAM10000_metadata is corrupt: it has .* bytes, the server lists"):
        download_ham10000(tmp_path / "ham", base_url=fake.url, progress=False)
    assert not (tmp_path / "ham" / "HAM10000_metadata.csv").exists()


def test_unreachable_server_names_the_url(tmp_path):
    url = closed_port_url()
    with pytest.raises(DownloadError) as raised:
        download_ham10000(tmp_path / "ham", base_url=url, progress=False, timeout_s=2)
    message = str(raised.value)
    assert f"{url}/api/datasets/:persistentId/versions/:latest/files" in message
    assert "--base-url" in message and "by hand" in message


def test_http_error_names_the_url_and_the_server_message(fake, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404 .*not found.*--base-url") as raised:
        download_ham10000(tmp_path / "ham", base_url=fake.url, persistent_id="doi:10.0/NOPE", progress=False)
    assert fake.url in str(raised.value)


def test_missing_dataset_file_is_named(fake, tmp_path):
    del fake.files[1]
    with pytest.raises(DownloadError, match="no HAM10000_images_part_2 .*HAM10000_images_part_1.zip"):
        download_ham10000(tmp_path / "ham", base_url=fake.url, progress=False)


@pytest.mark.parametrize("evil", ["../evil.jpg", "a/../../evil.jpg", "/tmp/evil.jpg", "..\\evil.jpg", "C:/evil.jpg"])
def test_zip_slip_members_are_refused(fake, tmp_path, evil):
    fake.files[0].content = zip_bytes({"ISIC_0000001.jpg": jpeg_bytes(0), evil: b"pwned"})
    root = tmp_path / "deep" / "ham"

    with pytest.raises(DownloadError, match="refusing to unpack member"):
        download_ham10000(root, base_url=fake.url, progress=False)

    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["deep/ham/HAM10000_images_part_1.zip", "deep/ham/HAM10000_metadata.csv"]
    assert not (root / "HAM10000_images_part_1").exists()


def test_bad_base_url_is_refused(tmp_path):
    with pytest.raises(DownloadError, match="not an http"):
        download_ham10000(tmp_path / "ham", base_url="ftp://example.org", progress=False)
