"""`flask init-bucket`: CORS for the configured origins and a lifecycle rule for incomplete uploads."""

from __future__ import annotations

from conftest import BUCKET

from s3drive.storage import LIFECYCLE_RULE_ID


def rules_by_id(s3) -> dict:
    return {rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]}


def test_init_bucket_sets_cors_and_the_abort_rule_keeping_other_rules(make_app, s3):
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {"ID": "operators-own", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 30}}
            ]
        },
    )
    app = make_app(CORS_ORIGINS="https://app.example, https://admin.example", MULTIPART_EXPIRES_IN=2 * 86400)

    result = app.test_cli_runner().invoke(args=["init-bucket"])

    assert result.exit_code == 0, result.output
    assert "aborted after 3 days" in result.output
    [cors] = s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"]
    assert cors["AllowedOrigins"] == ["https://app.example", "https://admin.example"]
    assert set(cors["AllowedMethods"]) >= {"PUT", "POST", "GET"} and "ETag" in cors["ExposeHeaders"]
    rules = rules_by_id(s3)
    assert rules["operators-own"]["Expiration"] == {"Days": 30}
    assert rules[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert rules[LIFECYCLE_RULE_ID]["Status"] == "Enabled"

    # Running it again replaces our rule, never duplicates it.
    again = app.test_cli_runner().invoke(args=["init-bucket", "--abort-incomplete-days", "1"])
    assert again.exit_code == 0, again.output
    rules = rules_by_id(s3)
    assert len(rules) == 2 and rules[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


def test_init_bucket_without_origins_leaves_cors_alone(make_app, s3):
    app = make_app(CORS_ORIGINS="")
    result = app.test_cli_runner().invoke(args=["init-bucket"])
    assert result.exit_code == 0, result.output
    assert "none configured" in result.output
    assert LIFECYCLE_RULE_ID in rules_by_id(s3)


def test_init_bucket_reports_a_missing_bucket_in_one_line(make_app, s3):
    app = make_app(S3_BUCKET="no-such-bucket")
    result = app.test_cli_runner().invoke(args=["init-bucket"])
    assert result.exit_code != 0
    assert "init-bucket failed" in result.output and "Traceback" not in result.output
