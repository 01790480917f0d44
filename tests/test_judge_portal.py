"""A hostile statement to POST /classify (issue 14, Must show): a viewer's 120 KB statement
is answered within 5 s with a clear 4xx, and /healthz keeps answering within 0.5 s."""

from __future__ import annotations

import threading
import time
import urllib.request

from tests.portal import Portal

SIZE = 120 * 1024
HOSTILE = {
    "pipeline": "ls" + " | cat" * (SIZE // 6),
    "nested": "echo " + "$(" * (SIZE // 8) + "ls" + ")" * (SIZE // 8),
    "awk": "awk '{" + "print," * (SIZE // 6) + "}' f",
    "words": "ls " + "a " * (SIZE // 2),
    # not hostile: 4,000 ordinary statements, each judged (the work is real)
    "a full script": "grep -n foo src/a.py | head\n" * (SIZE // 29),
}


def _healthz(portal: Portal) -> float:
    start = time.monotonic()
    with urllib.request.urlopen(portal.url + "/healthz", timeout=5) as r:
        assert r.status == 200
    return time.monotonic() - start


def test_hostile_classify_does_not_freeze_the_portal(portal: Portal) -> None:
    viewer = portal.token("vera", "viewer")
    for shape in sorted(HOSTILE):  # one portal for every shape: each start costs seconds
        _classify_while_polling(portal, viewer, shape)


def _classify_while_polling(portal: Portal, viewer: str, shape: str) -> None:
    answer: dict[str, object] = {}

    def classify() -> None:
        start = time.monotonic()
        status, body = portal.request(
            "POST", "/api/v1/classify", {"script": HOSTILE[shape]}, token=viewer
        )
        answer.update(status=status, body=body, seconds=time.monotonic() - start)

    thread = threading.Thread(target=classify)
    thread.start()
    slowest = 0.0
    while thread.is_alive():
        slowest = max(slowest, _healthz(portal))
        time.sleep(0.02)
    thread.join()
    print(f"\n{shape}: /classify {answer['status']} in {answer['seconds']:.3f} s; "
          f"slowest /healthz {slowest:.3f} s")  # fmt: skip
    assert answer["seconds"] < 5, answer  # type: ignore[operator]
    status = answer["status"]
    assert isinstance(status, int)
    if status != 200:  # judged, or refused with what to shorten; never a 500
        assert 400 <= status < 500, answer
        assert "too complex" in str(answer["body"]) or "limit" in str(answer["body"]), answer
    assert slowest < 0.5, f"/healthz took {slowest:.2f} s while /classify judged {shape}"
