"""What the API server and the agent share at the HTTP edge: refusing a
request before its body is read (guard.py) and TLS (tls.py)."""
