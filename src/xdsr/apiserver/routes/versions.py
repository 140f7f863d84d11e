"""Version discovery: / lists Octavia's API versions, /v2 answers "v2".
No token needed, as in Octavia."""

# No `from __future__ import annotations`: FastAPI must see the route
# signatures' types as objects.

from typing import Any

from fastapi import APIRouter, Request

from xdsr.api import schemas as s

router = APIRouter(tags=["versions"])

VERSIONS = [
    ("v2.0", "2016-12-11T00:00:00Z"),
    ("v2.1", "2018-04-20T00:00:00Z"),
    ("v2.2", "2018-07-31T00:00:00Z"),
    ("v2.3", "2018-12-18T00:00:00Z"),
    ("v2.4", "2018-12-19T00:00:00Z"),
    ("v2.5", "2019-01-21T00:00:00Z"),
    ("v2.6", "2019-01-25T00:00:00Z"),
    ("v2.7", "2018-01-25T12:00:00Z"),
    ("v2.8", "2019-02-12T00:00:00Z"),
    ("v2.9", "2019-03-04T00:00:00Z"),
    ("v2.10", "2019-03-05T00:00:00Z"),
    ("v2.11", "2019-06-24T00:00:00Z"),
    ("v2.12", "2019-09-11T00:00:00Z"),
    ("v2.13", "2019-09-13T00:00:00Z"),
    ("v2.14", "2019-11-10T00:00:00Z"),
    ("v2.15", "2020-03-10T00:00:00Z"),
    ("v2.16", "2020-03-15T00:00:00Z"),
    ("v2.17", "2020-04-29T00:00:00Z"),
    ("v2.18", "2020-04-29T01:00:00Z"),
    ("v2.19", "2020-05-12T00:00:00Z"),
    ("v2.20", "2020-08-02T00:00:00Z"),
    ("v2.21", "2020-09-03T00:00:00Z"),
    ("v2.22", "2020-09-04T00:00:00Z"),
    ("v2.23", "2020-09-07T00:00:00Z"),
    ("v2.24", "2020-10-15T00:00:00Z"),
    ("v2.25", "2021-10-02T00:00:00Z"),
    ("v2.26", "2022-08-29T00:00:00Z"),
]


@router.get("/", response_model=s.Versions, summary="API versions (version discovery)")
async def versions(request: Request) -> dict[str, Any]:
    base = str(request.base_url)
    if not base.endswith("/"):
        base += "/"
    return {
        "versions": [
            {
                "id": vid,
                "status": "CURRENT" if i == len(VERSIONS) - 1 else "SUPPORTED",
                "updated": updated,
                "links": [{"href": base + "v2", "rel": "self"}],
            }
            for i, (vid, updated) in enumerate(VERSIONS)
        ]
    }


@router.get("/v2", response_model=str, summary='The v2 API (answers "v2", as Octavia)')
async def v2() -> str:
    return "v2"
