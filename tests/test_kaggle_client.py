import pytest
import requests

from competition.kaggle_client import explain_kaggle_error


@pytest.mark.parametrize("port", [40377, 40412, 8080])
def test_a_refused_connection_is_a_network_error_whatever_numbers_its_text_holds(port):
    err = requests.ConnectionError(
        f"HTTPConnectionPool(host='127.0.0.1', port={port}): Max retries exceeded with url: /api/v1/submit (Caused by "
        f"NewConnectionError('<HTTPConnection object>: Failed to establish a new connection: [Errno 111] Connection "
        f"refused'))")
    line = explain_kaggle_error("gic", err, "upload")
    assert line.startswith("gic: cannot reach Kaggle for the upload (") and "[Errno 111] Connection refused" in line
    assert line.endswith("check your network")


@pytest.mark.parametrize("text, expected", [
    ("403 Client Error: Forbidden for url: https://www.kaggle.com/api/v1/competitions/data", "accept the competition"),
    ("404 Client Error: Not Found for url: https://www.kaggle.com/api/v1/competitions/x", "no such competition (404)"),
    ("failed at offset 40377 of the file", "Kaggle download failed (RuntimeError: failed at offset 40377"),
])
def test_an_answer_without_a_status_is_read_from_its_text_by_whole_numbers(text, expected):
    assert expected in explain_kaggle_error("gic", RuntimeError(text), "download")
