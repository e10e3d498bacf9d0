"""What every blueprint builds on: the JSON-object body parser, the Blueprint class, auth_required."""

from __future__ import annotations

import json

from flask import request
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.flaskparser import FlaskParser

from ..errors import BadRequest


def json_object_body() -> dict:
    """Return the request body as a dict, or raise bad_request (not JSON / not an object)."""
    if not request.is_json:
        raise BadRequest("Send a JSON object with Content-Type: application/json.")
    try:
        body = json.loads(request.get_data(cache=True))
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


class JSONObjectParser(FlaskParser):
    """webargs parser whose JSON location insists on a JSON object body (400 otherwise)."""

    def load_json(self, req, schema):
        return json_object_body()


class Blueprint(SmorestBlueprint):
    ARGUMENTS_PARSER = JSONObjectParser()


def auth_required(refresh: bool = False, verify_type: bool = True):
    """Require a valid token and document the bearer scheme in the OpenAPI."""

    def decorator(view):
        guarded = jwt_required(refresh=refresh, verify_type=verify_type)(view)
        return SmorestBlueprint.doc(security=[{"bearerAuth": []}])(guarded)

    return decorator
