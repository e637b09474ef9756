"""benchmarks/bench_class.py sends what the page sends when Generate is pressed, and reads every update of it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_class  # noqa: E402

pytest_plugins = ["fixtures_ui"]


def test_a_page_client_and_an_api_client_each_read_a_whole_generation(app):
    from fixtures_ui import STREAM_DELAY_S  # (loaded as a plugin first: imported at the top, pytest warns)

    url = app.url.rstrip("/")
    ids = bench_class.event_ids(url)
    assert set(ids) == {bench_class.PAGE_EVENT, bench_class.API_EVENT}
    data = ["Once upon a time", 20, 0.8, 40, 1.0, 1.0, 3, 1]
    page_wall, page_updates, page_bytes, page_tokens = bench_class.request(url, ids[bench_class.PAGE_EVENT], data)
    api_wall, api_updates, api_bytes, api_tokens = bench_class.request(url, ids[bench_class.API_EVENT], data)
    # The first token from the prompt's pass, 19 decode steps at the app's STREAM_DELAY_S each: the first update,
    # some between, the last
    for wall, updates, tokens in ((page_wall, page_updates, page_tokens), (api_wall, api_updates, api_tokens)):
        assert updates >= 3 and wall >= 19 * STREAM_DELAY_S and tokens == 20
    assert page_bytes > api_bytes  # the page's updates carry the coloured tokens, the API's plain text


def test_a_refused_request_stops_the_benchmark_with_the_servers_message(app):
    url = app.url.rstrip("/")
    page = bench_class.event_ids(url)[bench_class.PAGE_EVENT]
    with pytest.raises(SystemExit, match="a request failed.*temperature"):
        bench_class.request(url, page, ["Once upon a time", 20, 9, 40, 1.0, 1.0, 3, 1])
