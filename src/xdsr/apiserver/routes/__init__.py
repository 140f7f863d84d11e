"""The HTTP routes of the API, one module per resource; create_app (app.py)
mounts them. common.py holds what every route shares: authentication, the
documented error answers, the list and `fields=` parameters."""
