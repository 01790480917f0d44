"""static/js/ansi.js in the real browser: colours render, hostile sequences stay inert."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

RENDER = """(chunks) => {
  const a = new BF.Ansi();
  const box = document.createElement('pre');
  box.id = 'ansi-probe';
  for (const c of chunks) box.appendChild(a.toFragment(a.render(c)));
  document.body.appendChild(box);
  const tags = [...box.querySelectorAll('*')].map(e => e.tagName.toLowerCase());
  const spans = [...box.querySelectorAll('span')].map(s => ({
    text: s.textContent, cls: s.className, color: s.style.color,
    attrs: [...s.attributes].map(x => x.name) }));
  const out = {text: box.textContent, tags, spans};
  box.remove();
  return out;
}"""


@pytest.fixture
def render(logged_in_page: Page, portal_url: str) -> Any:
    logged_in_page.goto("/login?next=/")  # any page of ours: same origin, same CSP
    logged_in_page.add_script_tag(url="/static/js/ansi.js")

    def run(*chunks: str) -> dict[str, Any]:
        result: dict[str, Any] = logged_in_page.evaluate(RENDER, list(chunks))
        return result

    return run


def test_colours_and_weights_become_classes(render: Any) -> None:
    out = render("\x1b[1;31mred\x1b[0m plain \x1b[38;5;208morange\x1b[39m \x1b[38;2;1;2;3mrgb\n")
    assert out["text"] == "red plain orange rgb\n"
    red, orange, rgb = out["spans"]
    assert red == {"text": "red", "cls": "ansi-fg-1 ansi-bold", "color": "", "attrs": ["class"]}
    assert orange["color"] == "rgb(255, 135, 0)"
    assert rgb["color"] == "rgb(1, 2, 3)"


def test_a_sequence_split_across_chunks_is_carried_over(render: Any) -> None:
    out = render("a\x1b[3", "2mgreen\x1b", "[0m b")
    assert out["text"] == "agreen b"
    assert [s["cls"] for s in out["spans"]] == ["ansi-fg-2"]
    link = render("\x1b]8;;javascript:x", "\x1b", "\\text\x1b]8;;\x1b\\ end")
    assert link["text"] == "text end"


def test_hostile_output_is_inert_text(render: Any) -> None:
    hostile = (
        '<img src=x onerror="alert(1)"><script>alert(2)</script>'
        "\x1b]8;;javascript:alert(3)\x1b\\click me\x1b]8;;\x1b\\"
        "\x1b]0;window title\x07\x1b[2J\x1b[H\x07\x00done"
    )
    out = render(hostile)
    assert out["text"] == ('<img src=x onerror="alert(1)"><script>alert(2)</script>click medone')
    assert set(out["tags"]) <= {"span"}  # nothing but text and colour spans
    assert all(s["attrs"] in (["class"], ["class", "style"], ["style"]) for s in out["spans"])
