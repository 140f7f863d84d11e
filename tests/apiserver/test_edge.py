"""The API as an attacker sees it: the token is checked before a byte of the
body is read, bodies are capped, names cannot hold control or bidi
characters, and a 409 tells another project nothing it may not know."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from tests.apiserver.helpers import TOKEN_A, ServerThread, client, create_lb, stored, vip
from xdsr.apiserver.app import MAX_BODY_BYTES

LB = "/v2/lbaas/loadbalancers"


def raw_request(api: ServerThread, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request's head and the start of its body on a raw socket, and
    read the answer without sending the rest: an answer proves the server
    did not wait for (or read) the body it was promised."""
    url = urlsplit(api.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while True:  # the server closes after a refusal
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        status = int(data.split(b" ", 2)[1])
        return status, data


def head(path: str, length: int, token: str | None = None, chunked: bool = False) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Type: application/json"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    if token:
        lines.append(f"X-Auth-Token: {token}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("path", [LB, "/v2/loadbalancers", "/v2.0/lbaas/listeners", "/v2/lbaas/l7policies"])
def test_bad_json_without_a_token_is_401(api: ServerThread, path: str) -> None:
    with client(api, None) as c:
        r = c.post(path, content=b"{bad", headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    assert "X-Auth-Token" in r.json()["faultstring"]


def test_l7policies_need_a_token_then_are_refused(api: ServerThread, a: httpx.Client) -> None:
    with client(api, None) as c:
        assert c.get("/v2/lbaas/l7policies").status_code == 401
        assert c.post("/v2/lbaas/l7policies", content=b"{bad").status_code == 401
    # With a token: an empty list, as Octavia answers, and a create refused with the reason.
    assert a.get("/v2/lbaas/l7policies").json() == {"l7policies": [], "l7policies_links": []}
    r = a.post("/v2/lbaas/l7policies", json={"l7policy": {"listener_id": "x", "action": "REJECT"}})
    assert r.status_code == 400 and "L7 policies are not supported" in r.json()["faultstring"]


def test_a_huge_body_without_a_token_is_not_read(api: ServerThread) -> None:
    # 100 MB promised, 1 KiB sent: the 401 comes without the rest.
    status, _ = raw_request(api, head(LB, 100_000_000), b"{" * 1024)
    assert status == 401


def test_a_body_over_the_limit_is_413_before_it_is_read(api: ServerThread) -> None:
    status, data = raw_request(api, head(LB, MAX_BODY_BYTES + 1, TOKEN_A), b"{" * 1024)
    assert status == 413
    assert b"larger than" in data


def test_a_streamed_body_over_the_limit_is_413(api: ServerThread, a: httpx.Client) -> None:
    # No Content-Length: counted as it arrives.
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    before = len(a.get(LB).json()["loadbalancers"])
    r = a.post(LB, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "larger than" in r.json()["faultstring"]
    assert len(a.get(LB).json()["loadbalancers"]) == before


def test_a_body_under_the_limit_is_served(a: httpx.Client) -> None:
    body = b'{"loadbalancer": {"vip_address": "%s", "description": "%s"}}' % (vip().encode(), b"d" * 200)
    r = a.post(LB, content=body + b" " * (MAX_BODY_BYTES - len(body) - 1), headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text


BAD_TEXT = [
    "a\x00b",
    "tab\there",
    "new\nline",
    "esc\x1b[31m",
    "c1\x85",
    "evil\u202egnp.exe",
    "iso\u2066x\u2069",
    "ls\u2028",
]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_control_and_bidi_characters_are_refused(api: ServerThread, a: httpx.Client, text: str) -> None:
    lb = create_lb(a, name="plain")
    before = stored(api.endpoint, lb["id"])
    for attr, value in (("name", text), ("description", text), ("tags", ["ok", text])):
        r = a.post(LB, json={"loadbalancer": {"vip_address": vip(), attr: value}})
        assert r.status_code == 400, (attr, r.text)
        assert r.json()["faultstring"].startswith(f"loadbalancer.{attr}"), r.text
        assert "U+" in r.json()["faultstring"]
        r = a.put(f"{LB}/{lb['id']}", json={"loadbalancer": {attr: value}})
        assert r.status_code == 400, (attr, r.text)
    r = a.post(
        "/v2/lbaas/listeners",
        json={"listener": {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80, "name": text}},
    )
    assert r.status_code == 400 and r.json()["faultstring"].startswith("listener.name")
    assert stored(api.endpoint, lb["id"]) == before


def test_ordinary_unicode_names_are_kept(a: httpx.Client) -> None:
    name = "Ünïcødé 負荷分散 ✓ مرحبا"
    lb = create_lb(a, name=name, description="two words", tags=["é", "x y"])
    assert (lb["name"], lb["description"], lb["tags"]) == (name, "two words", ["é", "x y"])


def test_a_duplicate_vip_tells_another_project_nothing(a: httpx.Client, b: httpx.Client) -> None:
    address = vip()
    lb = create_lb(a, vip_address=address, vip_segment={"type": "vlan", "id": 3171})
    r = b.post(LB, json={"loadbalancer": {"vip_address": address, "vip_segment": {"type": "vlan", "id": 3171}}})
    assert r.status_code == 409
    text = r.json()["faultstring"]
    assert text.startswith("loadbalancer.vip_address") and address in text
    assert "3171" not in text and lb["id"] not in text and "vlan" not in text
    # Its own project learns which load balancer holds it.
    r = a.post(LB, json={"loadbalancer": {"vip_address": address, "vip_segment": {"type": "vlan", "id": 3171}}})
    assert r.status_code == 409 and lb["id"] in r.json()["faultstring"]
