"""Break-glass S3 restores: versions copied back, delete markers removed, a prefix put back to a time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from rollback.errors import UnsafePrecondition
from tests.aws.conftest import EdgeStack, Project, journal_events, unique
from tests.conftest import next_wall_second

ASSETS = ("infra", "assets")


@pytest.fixture
def bucket(aws: Callable[[str], Any], project: Callable[..., Project]) -> tuple[str, Project]:
    s3 = aws("s3")
    name = unique("assets")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name, project(None, aws_settings={"assets_bucket": name})


def _put(s3: Any, bucket: str, key: str, body: str, content_type: str = "text/html", **extra: Any) -> str:
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType=content_type,
                             **extra)["VersionId"])


def _body(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    except s3.exceptions.NoSuchKey:
        return None


def _next_second() -> dt.datetime:
    """An instant whose second is later than what was written before it and earlier than what is written
    after it (S3 lists LastModified to the second): the start of the next second, then wait for the one
    after."""
    moment = dt.datetime.fromtimestamp(next_wall_second(), dt.UTC)
    next_wall_second()
    return moment


def test_to_version_copies_content_and_metadata(aws: Callable[[str], Any], bucket: tuple[str, Project],
                                                run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    good = _put(s3, name, "index.html", "<h1>good</h1>", "text/html", Metadata={"release": "r41"},
                CacheControl="max-age=60")
    _put(s3, name, "index.html", "broken", "text/plain", Metadata={"release": "r42"})
    result = run_cli(*ASSETS, "--key", "index.html", "--to-version", good, "--yes", "--config", str(proj.config))
    assert result.code == 0, result.err
    assert _body(s3, name, "index.html") == "<h1>good</h1>"
    head = s3.head_object(Bucket=name, Key="index.html")
    assert head["ContentType"] == "text/html"
    assert head["Metadata"] == {"release": "r41"}
    assert head["CacheControl"] == "max-age=60"
    assert head["VersionId"] != good  # a new current version; the history keeps every version
    versions = s3.list_object_versions(Bucket=name, Prefix="index.html")["Versions"]
    assert len(versions) == 3
    assert "restored 1 key(s)" in result.out
    assert [e["step"] for e in journal_events(proj.journal_dir) if e["event"] == "step_finished"] == ["key-1"]


def test_dry_run_shows_exact_actions_and_changes_nothing(aws: Callable[[str], Any], bucket: tuple[str, Project],
                                                         run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    good = _put(s3, name, "app.js", "good")
    bad = _put(s3, name, "app.js", "bad")
    result = run_cli(*ASSETS, "--key", "app.js", "--to-version", good, "--dry-run", "--json",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    document = result.json()
    assert document["dry_run"] is True
    assert document["actions"] == [{
        "key": "app.js", "action": "copy", "reason": f"back to version {good}", "current_version": bad,
        "target_version": good, "markers": [],
        "description": f"app.js: copy version {good} over {bad} (back to version {good})"}]
    assert _body(s3, name, "app.js") == "bad"
    assert not proj.journal_dir.exists() or not list(proj.journal_dir.glob("*.jsonl"))


def test_undelete_key_and_prefix(aws: Callable[[str], Any], bucket: tuple[str, Project], run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    kept = _put(s3, name, "releases/r1/a.css", "a")
    _put(s3, name, "releases/r1/b.css", "b")
    _put(s3, name, "releases/r1/c.css", "c")
    s3.delete_object(Bucket=name, Key="releases/r1/a.css")
    s3.delete_object(Bucket=name, Key="releases/r1/a.css")  # two markers stacked
    s3.delete_object(Bucket=name, Key="releases/r1/b.css")

    one = run_cli(*ASSETS, "--key", "releases/r1/a.css", "--undelete", "--yes", "--config", str(proj.config))
    assert one.code == 0, one.err
    assert _body(s3, name, "releases/r1/a.css") == "a"
    assert s3.head_object(Bucket=name, Key="releases/r1/a.css")["VersionId"] == kept  # uncovered, not copied
    assert "remove delete marker(s)" in one.out

    rest = run_cli(*ASSETS, "--prefix", "releases/r1/", "--undelete", "--yes", "--json", "--config",
                   str(proj.config))
    assert rest.code == 0, rest.err
    actions = {a["key"]: a["action"] for a in rest.json()["actions"]}
    assert actions == {"releases/r1/a.css": "none", "releases/r1/b.css": "remove-delete-markers",
                       "releases/r1/c.css": "none"}
    assert [_body(s3, name, f"releases/r1/{k}.css") for k in "abc"] == ["a", "b", "c"]


def test_prefix_before_time_restores_each_key(aws: Callable[[str], Any], bucket: tuple[str, Project],
                                              run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    p = "site/"
    _put(s3, name, p + "changed.html", "old")          # changed after TIME -> old content copied back
    _put(s3, name, p + "deleted-after.html", "here")   # deleted after TIME -> delete marker removed
    _put(s3, name, p + "deleted-before.html", "gone")  # deleted before TIME -> stays deleted
    s3.delete_object(Bucket=name, Key=p + "deleted-before.html")
    _put(s3, name, p + "same.html", "same")            # untouched -> nothing
    moment = _next_second()
    _put(s3, name, p + "changed.html", "new")
    s3.delete_object(Bucket=name, Key=p + "deleted-after.html")
    _put(s3, name, p + "created-after.html", "new")   # did not exist at TIME -> delete marker added

    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # whole seconds, like S3's timestamps
    dry = run_cli(*ASSETS, "--prefix", p, "--before", stamp, "--dry-run", "--config", str(proj.config))
    assert dry.code == 0, dry.err
    lines = dry.out.strip().splitlines()
    assert lines[-1] == f"dry run: would restore 3 key(s) in s3://{name}; 2 unchanged"
    assert any(line.startswith("would site/changed.html: copy version") for line in lines)
    assert any(line.startswith("would site/created-after.html: add a delete marker") for line in lines)
    assert f"site/deleted-before.html: nothing to do (deleted at {stamp} and still deleted)" in lines
    assert _body(s3, name, p + "changed.html") == "new"

    result = run_cli(*ASSETS, "--prefix", p, "--before", stamp, "--yes", "--json", "--config", str(proj.config))
    assert result.code == 0, result.err
    by_key = {a["key"]: a["action"] for a in result.json()["actions"]}
    assert by_key == {p + "changed.html": "copy", p + "created-after.html": "delete",
                      p + "deleted-after.html": "remove-delete-markers", p + "deleted-before.html": "none",
                      p + "same.html": "none"}
    assert _body(s3, name, p + "changed.html") == "old"
    assert _body(s3, name, p + "deleted-after.html") == "here"
    assert _body(s3, name, p + "deleted-before.html") is None
    assert _body(s3, name, p + "created-after.html") is None
    assert _body(s3, name, p + "same.html") == "same"
    # Nothing was destroyed: the post-TIME content is still in the history.
    versions = s3.list_object_versions(Bucket=name, Prefix=p + "created-after.html")
    assert [v["IsLatest"] for v in versions["Versions"]] == [False]

    # --keep-new leaves keys created after TIME alone; everything else is already at TIME.
    _put(s3, name, p + "created-after.html", "again")
    keep = run_cli(*ASSETS, "--prefix", p, "--before", stamp, "--keep-new", "--yes", "--config", str(proj.config))
    assert keep.code == 0, keep.err
    assert _body(s3, name, p + "created-after.html") == "again"


def test_key_written_between_plan_and_apply_is_left_alone(aws: Callable[[str], Any],
                                                          bucket: tuple[str, Project]) -> None:
    from rollback.commands.infra import assets as commands
    from rollback.config import load_config
    from rollback.context import Services
    from rollback.runner import execute

    name, proj = bucket
    s3 = aws("s3")
    good = _put(s3, name, "index.html", "good")
    _put(s3, name, "index.html", "bad")
    config = load_config(proj.config)
    services = Services(config)
    planned = commands.plan_assets(config, services.s3(), bucket=name, key="index.html", to_version=good)
    _put(s3, name, "index.html", "hotfix by someone else")
    with pytest.raises(UnsafePrecondition, match="changed since the plan"):
        execute(planned.plan, commands.AssetsHandlers(services).handlers())
    assert _body(s3, name, "index.html") == "hotfix by someone else"


@pytest.mark.parametrize(("args", "message"), [
    (("--key", "k", "--prefix", "p", "--undelete"), "choose exactly one of --key and --prefix"),
    (("--key", "k"), "choose exactly one of --to-version, --before and --undelete"),
    (("--prefix", "p/", "--to-version", "v1"), "--to-version names one version of one key"),
    (("--key", "k", "--undelete", "--keep-new"), "--keep-new only applies with --before"),
    (("--key", "k", "--before", "yesterday-ish"), "--before: 'yesterday-ish' is not a time"),
    (("--key", "missing.html", "--undelete"), "has no versions"),
])
def test_bad_input(bucket: tuple[str, Project], run_cli: Any, args: tuple[str, ...], message: str) -> None:
    _, proj = bucket
    result = run_cli(*ASSETS, *args, "--yes", "--config", str(proj.config))
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_unknown_version_lists_the_versions(aws: Callable[[str], Any], bucket: tuple[str, Project],
                                            run_cli: Any) -> None:
    name, proj = bucket
    version = _put(aws("s3"), name, "k.txt", "x")
    result = run_cli(*ASSETS, "--key", "k.txt", "--to-version", "nope", "--yes", "--config", str(proj.config))
    assert result.code == 2
    assert result.err.strip() == f"error: k.txt: version nope does not exist (versions of this key: {version})"


def test_unversioned_bucket_is_refused(aws: Callable[[str], Any], project: Callable[..., Project],
                                      run_cli: Any) -> None:
    s3 = aws("s3")
    name = unique("plain")
    s3.create_bucket(Bucket=name)
    proj = project(None, aws_settings={"assets_bucket": name})
    result = run_cli(*ASSETS, "--prefix", "", "--undelete", "--yes", "--config", str(proj.config))
    assert result.code == 4
    assert "has never had versioning enabled" in result.err


def test_missing_bucket_is_one_line(project: Callable[..., Project], run_cli: Any, aws_env: str) -> None:
    proj = project(None, aws_settings={"assets_bucket": "no-such-bucket-rollback"})
    result = run_cli(*ASSETS, "--prefix", "x/", "--undelete", "--yes", "--config", str(proj.config))
    assert result.code == 1
    assert result.err.strip().startswith("error: reading versioning of bucket no-such-bucket-rollback failed: "
                                         "NoSuchBucket")


def test_bucket_option_overrides_config(aws: Callable[[str], Any], edge_stack: Callable[..., EdgeStack],
                                        project: Callable[..., Project], run_cli: Any) -> None:
    stack = edge_stack(with_alarm=False)
    s3 = aws("s3")
    _put(s3, stack.bucket, "x.txt", "1")
    s3.delete_object(Bucket=stack.bucket, Key="x.txt")
    proj = project(None, aws_settings={"assets_bucket": "some-other-bucket"})
    result = run_cli(*ASSETS, "--bucket", stack.bucket, "--key", "x.txt", "--undelete", "--yes",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    assert _body(s3, stack.bucket, "x.txt") == "1"


def test_suspended_versioning_refuses_to_replace_a_null_version(aws: Callable[[str], Any],
                                                                bucket: tuple[str, Project], run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")

    def versioning(status: str) -> None:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})

    versioning("Suspended")
    s3.put_object(Bucket=name, Key="index.html", Body=b"only copy of this")  # version "null"
    versioning("Enabled")
    good = _put(s3, name, "index.html", "good")
    _put(s3, name, "index.html", "bad")
    moment = _next_second()
    versioning("Suspended")
    s3.put_object(Bucket=name, Key="new.html", Body=b"created while suspended")  # version "null"
    nulls = [v["Key"] for v in s3.list_object_versions(Bucket=name)["Versions"] if v["VersionId"] == "null"]
    assert sorted(nulls) == ["index.html", "new.html"]
    for args in (("--key", "index.html", "--to-version", good),  # a copy would replace the null version
                 ("--key", "new.html", "--before", moment.isoformat())):  # a delete would remove it
        result = run_cli(*ASSETS, *args, "--yes", "--config", str(proj.config))
        assert result.code == 4, result.err
        assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
        assert "versioning suspended" in result.err and "null version for good" in result.err
        assert f"aws s3api put-bucket-versioning --bucket {name} --versioning-configuration Status=Enabled" \
            in result.err
    assert _body(s3, name, "new.html") == "created while suspended"
    assert len(s3.list_object_versions(Bucket=name)["Versions"]) == 4
    # the refused restores left both null versions exactly as they were: read them back by id
    for key, body in (("index.html", "only copy of this"), ("new.html", "created while suspended")):
        assert s3.get_object(Bucket=name, Key=key, VersionId="null")["Body"].read().decode() == body


def test_suspended_versioning_plans_a_restore_when_no_null_version_is_at_stake(
        aws: Callable[[str], Any], bucket: tuple[str, Project], run_cli: Any) -> None:
    name, proj = bucket
    s3 = aws("s3")
    good = _put(s3, name, "app.js", "good")
    _put(s3, name, "app.js", "bad")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    result = run_cli(*ASSETS, "--key", "app.js", "--to-version", good, "--dry-run", "--json",
                     "--config", str(proj.config))
    assert result.code == 0, result.err
    assert [a["action"] for a in result.json()["actions"]] == ["copy"]
