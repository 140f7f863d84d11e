"""The vocabulary in one namespace: `from xdsr.api import schemas as s`, then
`s.MemberCreate`, `s.MemberOut`, `s.Port`.

Each name is written once, in the module that has its job: fields.py (what
one attribute may hold), requests.py (request bodies), responses.py
(response bodies). This module only gathers them, so that a client of the
vocabulary (the API server, the Octavia driver, tests) needs one import.
"""

from xdsr.api.fields import *  # noqa: F403
from xdsr.api.requests import *  # noqa: F403
from xdsr.api.responses import *  # noqa: F403
