"""Templates with parameters: definitions, rendering (values never become command text),
binding, and batches from templates over the API against a real portal."""

from __future__ import annotations

import pytest

from sandbox.errors import InputError
from sandbox.templates import bind, check_definitions, render
from tests.portal import Portal

DEFS = check_definitions(
    [
        {"name": "msg", "type": "string", "required": True, "pattern": "[^\\n]*"},
        {"name": "n", "type": "int", "default": 3},
        {"name": "loud", "type": "bool", "default": False},
        {"name": "env", "type": "choice", "choices": ["dev", "prod"], "default": "dev"},
    ]
)


@pytest.mark.parametrize(
    ("script", "rendered"),
    [
        ("echo {{msg}}", 'echo "${BF_PARAM_msg}"'),
        ('echo "say {{ msg }} now"', 'echo "say ${BF_PARAM_msg} now"'),
        ("seq {{n}} # {{env}}", 'seq "${BF_PARAM_n}" # "${BF_PARAM_env}"'),
        ('echo \\"{{msg}}', 'echo \\"' + '"${BF_PARAM_msg}"'),
        ("echo 'it''s' {{msg}}", "echo 'it''s' \"${BF_PARAM_msg}\""),
    ],
)
def test_render_quotes_every_reference(script: str, rendered: str) -> None:
    assert render(script, DEFS) == rendered


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("echo '{{msg}}'", "single quotes"),
        ("echo {{nope}}", "does not define"),
        ("echo {{}}", "does not define"),
    ],
)
def test_render_refuses(script: str, error: str) -> None:
    with pytest.raises(InputError, match=error):
        render(script, DEFS)


def test_bind_fills_defaults_and_checks_types() -> None:
    env = bind(DEFS, {"msg": "$(id)", "loud": True})
    assert env == {
        "BF_PARAM_msg": "$(id)",
        "BF_PARAM_n": "3",
        "BF_PARAM_loud": "true",
        "BF_PARAM_env": "dev",
    }
    for values, error in (
        ({}, "`params.msg` is required"),
        ({"msg": "x", "n": "3"}, "`params.n` must be a whole number"),
        ({"msg": "x", "loud": 1}, "`params.loud` must be true or false"),
        ({"msg": "x", "env": "staging"}, "`params.env` must be one of dev, prod"),
        ({"msg": "a\nb"}, "does not match"),
        ({"msg": "x", "other": 1}, "unknown parameter"),
        ({"msg": "x" * 5000}, "at most 4096"),
        ("msg=x", "maps parameter names"),
    ):
        with pytest.raises(InputError, match=error):
            bind(DEFS, values)


@pytest.mark.parametrize(
    ("defs", "error"),
    [
        ([{"name": "1x"}], r"params\[0\]`.name"),
        ([{"name": "a"}, {"name": "a"}], "defined twice"),
        ([{"name": "a", "type": "float"}], r"params\[0\]`.type"),
        ([{"name": "a", "type": "choice"}], "choices"),
        ([{"name": "a", "pattern": "("}], "not a regular expression"),
        ([{"name": "a", "type": "int", "default": "x"}], "default must be a whole number"),
        ([{"name": "a", "colour": 1}], "unknown field"),
        ("a", "list"),
    ],
)
def test_definitions_are_checked(defs: object, error: str) -> None:
    with pytest.raises(InputError, match=error):
        check_definitions(defs)


def test_batches_from_a_template(portal: Portal) -> None:
    alice, bob = portal.token("alice", "operator"), portal.token("bob", "operator")
    viewer = portal.token("vera", "viewer")
    template = {
        "name": "greet",
        "script": 'echo "hello {{who}}" > greeting.txt\ncat greeting.txt\necho {{who}} | wc -c\n',
        "params": [{"name": "who", "required": True}],
    }
    status, t = portal.request("POST", "/api/v1/templates", template, token=alice)
    assert status == 201, t
    status, err = portal.request("POST", "/api/v1/templates", template, token=bob)
    assert status == 409  # the name is taken
    assert portal.request("POST", "/api/v1/templates", template, token=viewer)[0] == 403
    bad = {**template, "name": "bad", "script": "echo '{{who}}'"}
    status, err = portal.request("POST", "/api/v1/templates", bad, token=alice)
    assert status == 400 and "single quotes" in err["message"]

    hostile = '$(touch pwned1)`touch pwned2`"; touch pwned3; echo "'
    status, batch = portal.request(
        "POST", "/api/v1/batches", {"template": "greet", "params": {"who": hostile}}, token=alice
    )
    assert status == 201, batch
    assert batch["params"] == {"who": hostile}
    assert "pwned" not in "".join(c["command"] for c in batch["commands"])
    done = portal.wait_batch(batch["id"], alice)
    assert done["status"] == "succeeded", done
    cid = done["commands"][1]["id"]
    _s, out = portal.request(
        "GET", f"/api/v1/batches/{batch['id']}/commands/{cid}/output", token=alice
    )
    assert out["stdout"] == f"hello {hostile}\n"
    workspace = portal.data / "workspaces" / "default"
    assert not list(workspace.glob("pwned*"))

    # a re-run keeps the values
    status, again = portal.request("POST", f"/api/v1/batches/{batch['id']}/rerun", token=alice)
    assert status == 201 and again["params"] == {"who": hostile}

    for body, code, text in (
        ({"template": "greet"}, 400, "`params.who` is required"),
        ({"template": "greet", "params": {"who": "x", "x": 1}}, 400, "unknown parameter"),
        ({"template": "nope"}, 404, "no template"),
        ({"template": "greet", "script": "ls"}, 400, "not both"),
        ({"script": "ls", "params": {"a": "b"}}, 400, "goes with `template`"),
    ):
        status, err = portal.request("POST", "/api/v1/batches", body, token=alice)
        assert status == code and text in err["message"], (body, err)

    status, _ = portal.request(
        "PATCH", f"/api/v1/templates/{t['id']}", {"script": "echo {{who}}"}, token=bob
    )
    assert status == 403
    status, changed = portal.request(
        "PATCH", f"/api/v1/templates/{t['id']}", {"script": "echo {{who}}"}, token=alice
    )
    assert status == 200 and changed["script"] == "echo {{who}}"
    assert (
        portal.request("GET", "/api/v1/templates", token=viewer)[1]["items"][0]["name"] == "greet"
    )
    assert portal.request("DELETE", f"/api/v1/templates/{t['id']}", token=alice)[0] == 200
    assert portal.request("GET", f"/api/v1/templates/{t['id']}", token=alice)[0] == 404
