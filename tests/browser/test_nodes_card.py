"""The dashboard's Nodes card: a cluster portal lists its worker nodes, their load and
workspaces (as text); the embedded portal keeps the card hidden."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from tests.cluster_fixtures import WorkerNode, cluster, redis_server
from tests.portal import ADMIN_PASSWORD, Portal

__all__ = ["cluster", "redis_server"]  # fixtures


def test_the_embedded_dashboard_has_no_nodes_card(logged_in_page: Page) -> None:
    logged_in_page.goto("/")
    expect(logged_in_page.locator("#running-title")).to_be_visible()
    logged_in_page.wait_for_load_state("networkidle")
    expect(logged_in_page.locator("#nodes-card")).to_be_hidden()


def test_a_cluster_dashboard_lists_its_nodes(
    browser: Browser, cluster: tuple[Portal, list[WorkerNode]]
) -> None:
    p, _nodes = cluster
    token = p.token("op", "operator")
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": "echo '<b>x</b>'\n", "workspace": "ws-ui"},
        token=token,
    )  # fmt: skip
    assert status == 201, batch
    context = browser.new_context(base_url=p.url)
    try:
        page = context.new_page()
        res = context.request.post(
            "/api/v1/session", data={"name": "admin", "password": ADMIN_PASSWORD}
        )
        assert res.ok, res.text()
        page.goto("/")
        card = page.locator("#nodes-card")
        expect(card).to_be_visible(timeout=15000)
        expect(card.locator("li[data-node='n1']")).to_contain_text("n1")
        expect(card.locator("li[data-node='n2']")).to_contain_text("n2")
        expect(card).to_contain_text("ws-ui", timeout=10000)  # the placed workspace
        expect(card.locator("li.node-live")).to_have_count(2)
    finally:
        context.close()
