"""Schedules that run a template: checked at create/update like POST /batches
{"template", "params"}; each run renders the template as it is then, values as
BF_PARAM_* variables; a template gone or no longer fitting pauses it with a reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal import Portal, running_portal


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    env = {"BASHFLEET_SCHEDULE_MIN_INTERVAL_S": "1", "BASHFLEET_SUBMIT_RATE": "1000"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as p:
        yield p


def output(portal: Portal, batch: dict[str, Any], token: str) -> str:
    done = portal.wait_batch(batch["id"], token)
    assert done["status"] == "succeeded", done
    cid = done["commands"][0]["id"]
    _s, out = portal.request(
        "GET", f"/api/v1/batches/{batch['id']}/commands/{cid}/output", token=token
    )
    return str(out["stdout"])


def test_schedules_from_templates(portal: Portal) -> None:
    alice = portal.token("alice", "operator")
    status, t = portal.request(
        "POST",
        "/api/v1/templates",
        {
            "name": "greet",
            "script": 'echo "hello {{who}}"\n',
            "params": [{"name": "who", "required": True, "pattern": "[^x]*"}],
        },
        token=alice,
    )
    assert status == 201, t
    base = {"name": "greeter", "cron": "0 3 * * *", "paused": True}
    for body, field in (
        ({**base, "template": "nope", "params": {"who": "a"}}, "`template`"),
        ({**base, "template": "greet"}, "`params.who` is required"),
        ({**base, "template": "greet", "params": {"who": 5}}, "`params.who`"),
        ({**base, "template": "greet", "params": {"who": "xx"}}, "pattern"),
        ({**base, "template": "greet", "params": {"who": "a", "y": "b"}}, "unknown"),
        ({**base, "template": "greet", "params": ["a"]}, "`params`"),
        ({**base, "template": "greet", "params": {"who": "a"}, "script": "ls"}, "not both"),
        ({**base, "script": "ls", "params": {"who": "a"}}, "`params` goes with `template`"),
        ({**base, "template": 7, "params": {}}, "`template`"),
    ):
        status, err = portal.request("POST", "/api/v1/schedules", body, token=alice)
        assert status == 400 and field in err["message"], (body, err)
    assert portal.request("GET", "/api/v1/schedules", token=alice)[1]["items"] == []

    hostile = '$(touch pwned1); `touch pwned2`"; touch pwned3'
    status, s = portal.request(
        "POST",
        "/api/v1/schedules",
        {**base, "template": "greet", "params": {"who": hostile}},
        token=alice,
    )
    assert status == 201, s
    assert s["template"] == "greet" and s["params"] == {"who": hostile} and s["script"] == ""
    run = f"/api/v1/schedules/{s['id']}/run"
    status, batch = portal.request("POST", run, token=alice)
    assert status == 201, batch
    assert batch["params"] == {"who": hostile} and batch["source"] == "schedule"
    assert "pwned" not in "".join(c["command"] for c in batch["commands"])
    assert output(portal, batch, alice) == f"hello {hostile}\n"
    assert not list((portal.data / "workspaces" / "default").glob("pwned*"))

    # a changed template: the next run uses it as it is now
    status, _ = portal.request(
        "PATCH", f"/api/v1/templates/{t['id']}", {"script": 'echo "bye {{who}}"'}, token=alice
    )
    assert status == 200
    assert output(portal, portal.request("POST", run, token=alice)[1], alice) == f"bye {hostile}\n"

    # new values are checked too, and a rejected change changes nothing
    path = f"/api/v1/schedules/{s['id']}"
    status, err = portal.request("PATCH", path, {"params": {"who": "xx"}}, token=alice)
    assert status == 400 and "pattern" in err["message"]
    status, changed = portal.request("PATCH", path, {"params": {"who": "bob"}}, token=alice)
    assert status == 200 and changed["params"] == {"who": "bob"}
    assert output(portal, portal.request("POST", run, token=alice)[1], alice) == "bye bob\n"

    # the template now needs a value the schedule lacks: its next tick pauses it, saying why
    status, _ = portal.request(
        "PATCH",
        f"/api/v1/templates/{t['id']}",
        {
            "script": 'echo "{{greeting}} {{who}}"',
            "params": [{"name": "who"}, {"name": "greeting", "required": True}],
        },
        token=alice,
    )
    assert status == 200
    status, err = portal.request("PATCH", path, {"interval_s": 1, "paused": False}, token=alice)
    assert status == 200, err
    deadline = time.monotonic() + 20
    while not (now := portal.request("GET", path, token=alice)[1])["paused"]:
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    assert "its template greet" in now["paused_reason"], now
    assert "`params.greeting` is required" in now["paused_reason"]
    _s, batches = portal.request("GET", f"/api/v1/batches?schedule_id={s['id']}", token=alice)
    assert len(batches["items"]) == 3  # the three runs above, no failed one

    # a schedule may go back to a plain script; a deleted template stops run-now with a 400
    assert portal.request("DELETE", f"/api/v1/templates/{t['id']}", token=alice)[0] == 200
    status, err = portal.request("POST", run, token=alice)
    assert status == 400 and "no template 'greet'" in err["message"], err
    _s, now = portal.request("GET", path, token=alice)
    assert "no template 'greet'" in now["paused_reason"]
    status, plain = portal.request("PATCH", path, {"script": "echo plain"}, token=alice)
    assert status == 200 and plain["template"] is None and plain["params"] is None
    assert output(portal, portal.request("POST", run, token=alice)[1], alice) == "plain\n"
