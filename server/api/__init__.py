"""Starlette routes: thin handlers that parse, call one domain or store function, and translate."""
