"""Services: plain functions on typed, validated inputs; they return models or dataclasses and
raise s3drive.errors. No request, no JSON: the blueprints in api/ do that."""
