"""The API's vocabulary: the request and response bodies of xdsr's Octavia v2
subset and the rules of what L2 direct server return refuses.

Free of FastAPI and numpy, so that the Octavia provider driver (inside
Octavia's own API process), the API server and tests share one definition.
"""
