"""Flask's JSON provider on orjson: every answer (jsonify, flask-smorest's) is encoded in C.

A 1,000-ticket batch answer is ~700 KiB of JSON: the standard library takes ~10 ms to encode it on
our machines, orjson ~1 ms. What orjson does not know (dates, Decimal, objects with __html__) goes
through Flask's own conversions, so answers stay what they were; a value orjson refuses outright
(an integer beyond 64 bits echoed in a validation error) falls back to the standard library.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class OrjsonProvider(DefaultJSONProvider):
    """Encode with orjson; Flask's default conversions for the rest; decode as Flask does."""

    sort_keys = False  # keep schema order (orjson never sorts)

    def _encode(self, obj: Any) -> bytes | None:
        try:
            return orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return None

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Serialize obj to a JSON string (orjson unless a caller asks for json.dumps options)."""
        encoded = None if kwargs else self._encode(obj)
        return encoded.decode() if encoded is not None else super().dumps(obj, **kwargs)

    def response(self, *args: Any, **kwargs: Any):
        """Return a JSON response of the arguments, as flask.jsonify does."""
        obj = self._prepare_response_obj(args, kwargs)
        encoded = self._encode(obj)
        body = encoded + b"\n" if encoded is not None else f"{super().dumps(obj)}\n"
        return self._app.response_class(body, mimetype=self.mimetype)
