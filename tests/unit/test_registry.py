"""Tasks registered on an App (pgjobs.registry, through pgjobs.App): registration rules,
argument checks, options, job specs, and App._prepare, the validation done before any enqueue.
Constructing an App does not connect, so none of this needs a database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import pgjobs
from pgjobs.backoff import DEFAULT_POLICY, RetryPolicy
from pgjobs.client import OPTION_NAMES, EnqueueOptions
from pgjobs.errors import InvalidInput
from pgjobs.registry import JobSpec, Task

KNOWN_OPTIONS = (
    "callback_url, dedupe_for, dedupe_key, dedupe_mode, delay, depends_on, lock_key, "
    "max_attempts, meta, not_before, parent_id, priority, queue"
)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> pgjobs.App:
    monkeypatch.delenv("PGJOBS_MAX_ARGS_BYTES", raising=False)
    return pgjobs.App("host=invalid dbname=x")


# Handlers live at module level: nested ones need an explicit name=.


def send_email(to: str, subject: str = "hi") -> dict[str, str]:
    """Send one email."""
    return {"to": to, "subject": subject}


def anything(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def required_and_kwargs(user_id: int, **extra: Any) -> tuple[int, dict[str, Any]]:
    return user_id, extra


def keyword_only(*, user_id: int, verbose: bool = False) -> tuple[int, bool]:
    return user_id, verbose


def positional_only(user_id: int, /, verbose: bool = False) -> int:
    return user_id


def positional_only_default(limit: int = 10, /, *, name: str) -> tuple[int, str]:
    return limit, name


def positional_only_default_kwargs(limit: int = 10, /, **kw: Any) -> tuple[int, dict[str, Any]]:
    return limit, kw


def with_varargs(a: int, *rest: int) -> int:
    return a + sum(rest)


def no_args() -> str:
    return "done"


async def async_handler(x: int) -> int:
    return x * 2


# --- registration -------------------------------------------------------------------------------


def test_constructing_an_app_does_not_connect(app: pgjobs.App) -> None:
    assert app.tasks == {}
    assert app._pool is None


def test_name_defaults_to_module_and_qualname(app: pgjobs.App) -> None:
    task = app.task(send_email)
    assert isinstance(task, Task)
    assert task.name == f"{send_email.__module__}.send_email"
    assert app.tasks == {task.name: task}
    assert repr(task) == f"<pgjobs task {task.name}>"
    assert task.__doc__ == "Send one email."
    assert task.__wrapped__ is send_email


def test_decorator_with_options(app: pgjobs.App) -> None:
    decorate = app.task(name="emails.send", queue="emails", priority=5, max_attempts=7)
    task = decorate(send_email)
    assert (task.name, task.queue, task.priority, task.max_attempts) == (
        "emails.send",
        "emails",
        5,
        7,
    )
    assert task.timeout is None
    assert task.retry is DEFAULT_POLICY
    assert app.tasks["emails.send"] is task


def test_calling_the_task_calls_the_handler(app: pgjobs.App) -> None:
    task = app.task(send_email)
    assert task("a@example.com") == {"to": "a@example.com", "subject": "hi"}
    assert task(to="b@example.com", subject="yo") == {"to": "b@example.com", "subject": "yo"}
    with pytest.raises(TypeError):
        task()


def test_async_handlers_are_recognised(app: pgjobs.App) -> None:
    assert app.task(async_handler).is_async is True
    assert app.task(send_email).is_async is False


def test_duplicate_names_are_refused(app: pgjobs.App) -> None:
    app.task(name="emails.send")(send_email)
    with pytest.raises(InvalidInput) as info:
        app.task(name="emails.send")(anything)
    assert str(info.value) == "task 'emails.send' is registered twice"
    assert app.tasks["emails.send"].fn is send_email


def test_registering_the_same_function_twice_is_refused(app: pgjobs.App) -> None:
    app.task(send_email)
    with pytest.raises(InvalidInput, match="is registered twice"):
        app.task(send_email)


def test_same_name_on_two_apps_is_fine(app: pgjobs.App) -> None:
    other = pgjobs.App("host=invalid dbname=y")
    app.task(name="t")(send_email)
    other.task(name="t")(send_email)
    assert app.tasks["t"] is not other.tasks["t"]


def test_lambda_without_name_is_refused(app: pgjobs.App) -> None:
    with pytest.raises(InvalidInput) as info:
        app.task(lambda x: x)
    assert str(info.value).endswith(": give nested or lambda handlers an explicit name=")
    assert "<lambda>" in str(info.value)
    assert app.tasks == {}


def test_nested_function_without_name_is_refused(app: pgjobs.App) -> None:
    def inner(x: int) -> int:
        return x

    with pytest.raises(InvalidInput) as info:
        app.task(inner)
    assert str(info.value) == (
        f"{inner.__module__}.{inner.__qualname__}: give nested or lambda handlers an explicit name="
    )


def test_lambda_and_nested_functions_with_a_name_are_fine(app: pgjobs.App) -> None:
    def inner(x: int) -> int:
        return x + 1

    assert app.task(name="double")(lambda x: x * 2)(x=4) == 8
    assert app.task(name="inner")(inner)(1) == 2


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"name": "bad name"}, "invalid task name 'bad name'"),
        ({"queue": "bad queue"}, "invalid queue name 'bad queue'"),
        ({"queue": ""}, "invalid queue name ''"),
        ({"priority": 1001}, "priority 1001 is out of range: use -1000..1000"),
        ({"priority": True}, "priority must be an integer, got True"),
        ({"priority": 1.5}, "priority must be an integer, got 1.5"),
        ({"max_attempts": 0}, "max_attempts 0 is out of range: use 1..1000"),
        ({"timeout": "soon"}, "invalid timeout 'soon'"),
        ({"timeout": -1}, "invalid timeout -1: must not be negative"),
    ],
)
def test_invalid_task_options_are_refused(
    app: pgjobs.App, options: dict[str, Any], text: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        app.task(**options)(send_email)
    assert str(info.value).startswith(text)
    assert app.tasks == {}


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        ("5m", timedelta(minutes=5)),
        (30, timedelta(seconds=30)),
        (timedelta(hours=1), timedelta(hours=1)),
    ],
)
def test_timeout_is_parsed(app: pgjobs.App, timeout: Any, expected: timedelta) -> None:
    task = app.task(timeout=timeout)(send_email)
    assert task.timeout == expected


def test_retry_policy_is_kept(app: pgjobs.App) -> None:
    policy = RetryPolicy.of("5s", "10m")
    assert app.task(retry=policy)(send_email).retry is policy


# --- check_args ---------------------------------------------------------------------------------


def refusal(task: Task[Any, Any], kwargs: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as info:
        task.check_args(kwargs)
    return str(info.value)


def test_check_args_accepts_callable_arguments(app: pgjobs.App) -> None:
    task = app.task(send_email)
    task.check_args({"to": "a"})
    task.check_args({"to": "a", "subject": "s"})


def test_missing_required_argument_is_refused(app: pgjobs.App) -> None:
    task = app.task(name="emails.send")(send_email)
    assert refusal(task, {"subject": "s"}) == (
        "task emails.send: missing a required argument: 'to' "
        "(the handler takes (to: 'str', subject: 'str' = 'hi') -> 'dict[str, str]')"
    )


def test_unknown_argument_is_refused(app: pgjobs.App) -> None:
    task = app.task(name="emails.send")(send_email)
    message = refusal(task, {"to": "a", "cc": "b"})
    assert message.startswith("task emails.send: got an unexpected keyword argument 'cc'")
    assert "(the handler takes (to: 'str', subject: 'str' = 'hi')" in message


def test_no_argument_handler(app: pgjobs.App) -> None:
    task = app.task(no_args)
    task.check_args({})
    assert "unexpected keyword argument 'x'" in refusal(task, {"x": 1})


@pytest.mark.parametrize("kwargs", [{}, {"a": 1}, {"anything": [1, 2], "else": None}])
def test_var_keyword_handlers_accept_anything(app: pgjobs.App, kwargs: dict[str, Any]) -> None:
    app.task(anything).check_args(kwargs)


def test_var_keyword_handler_still_needs_its_required_arguments(app: pgjobs.App) -> None:
    task = app.task(required_and_kwargs)
    task.check_args({"user_id": 1, "x": 2, "y": 3})
    assert "missing a required argument: 'user_id'" in refusal(task, {"x": 2})


def test_keyword_only_parameters(app: pgjobs.App) -> None:
    task = app.task(keyword_only)
    task.check_args({"user_id": 1})
    task.check_args({"user_id": 1, "verbose": True})
    assert "missing a required argument: 'user_id'" in refusal(task, {"verbose": True})
    assert "unexpected keyword argument 'other'" in refusal(task, {"user_id": 1, "other": 2})


def test_required_positional_only_parameter_can_never_be_given(app: pgjobs.App) -> None:
    # Job arguments are passed by keyword: a required positional-only parameter cannot be
    # filled, so every argument set is refused (not waved through by the fast path).
    task = app.task(positional_only)
    for kwargs in ({"user_id": 1}, {"user_id": 1, "verbose": True}, {}):
        assert refusal(task, kwargs).startswith(f"task {task.name}: ")
    assert "positional" in refusal(task, {"user_id": 1})


def test_positional_only_parameter_with_default(app: pgjobs.App) -> None:
    task = app.task(positional_only_default)
    task.check_args({"name": "n"})
    # 'limit' is positional-only: passing it by keyword cannot work.
    assert refusal(task, {"name": "n", "limit": 5}).startswith(f"task {task.name}: ")
    assert "missing a required argument: 'name'" in refusal(task, {})


def test_positional_only_with_var_keyword_takes_the_name_into_kwargs(app: pgjobs.App) -> None:
    task = app.task(positional_only_default_kwargs)
    task.check_args({"limit": 5})  # lands in **kw, as the call would
    assert task(**{"limit": 5}) == (10, {"limit": 5})


def test_var_positional_is_ignored(app: pgjobs.App) -> None:
    task = app.task(with_varargs)
    task.check_args({"a": 1})
    assert "unexpected keyword argument 'rest'" in refusal(task, {"a": 1, "rest": [2]})


# --- options and specs ----------------------------------------------------------------------------


def test_spec_returns_a_job_spec_with_the_arguments(app: pgjobs.App) -> None:
    task = app.task(name="emails.send")(send_email)
    spec = task.spec(to="a@example.com", subject="s")
    assert spec == JobSpec("emails.send", {"to": "a@example.com", "subject": "s"}, EnqueueOptions())


def test_spec_checks_the_arguments(app: pgjobs.App) -> None:
    task = app.task(name="emails.send")(send_email)
    with pytest.raises(
        InvalidInput, match=r"^task emails\.send: missing a required argument: 'to'"
    ):
        task.spec(subject="s")


def test_options_bind_enqueue_options(app: pgjobs.App) -> None:
    task = app.task(name="emails.send")(send_email)
    call = task.options(queue="urgent", priority=9, delay="5m")
    assert call.task is task
    assert call.connection is None
    assert call.options == EnqueueOptions(queue="urgent", priority=9, delay="5m")
    spec = call.spec(to="a")
    assert spec == JobSpec(
        "emails.send", {"to": "a"}, EnqueueOptions(queue="urgent", priority=9, delay="5m")
    )


def test_options_keep_the_connection(app: pgjobs.App) -> None:
    marker = object()
    assert app.task(send_email).options(connection=marker).connection is marker


def test_unknown_option_is_refused_listing_known_options(app: pgjobs.App) -> None:
    task = app.task(send_email)
    with pytest.raises(InvalidInput) as info:
        task.options(bogus=1)
    assert str(info.value) == f"unknown enqueue option(s) bogus: known options are {KNOWN_OPTIONS}"


def test_several_unknown_options_are_listed_sorted(app: pgjobs.App) -> None:
    with pytest.raises(InvalidInput) as info:
        app.task(send_email).options(zeta=1, alpha=2, queue="q")
    assert str(info.value).startswith("unknown enqueue option(s) alpha, zeta: known options")


def test_known_options_are_the_enqueue_option_fields() -> None:
    assert ", ".join(sorted(OPTION_NAMES)) == KNOWN_OPTIONS


# --- App._prepare ---------------------------------------------------------------------------------


@pytest.fixture
def emails(app: pgjobs.App) -> Task[Any, Any]:
    return app.task(name="emails.send", queue="emails", priority=5, max_attempts=7)(send_email)


def test_prepare_applies_task_defaults(app: pgjobs.App, emails: Task[Any, Any]) -> None:
    job = app._prepare(emails, {"to": "a@example.com"}, {})
    assert job.task == "emails.send"
    assert json.loads(job.args) == {"to": "a@example.com"}
    assert (job.queue, job.priority, job.max_attempts) == ("emails", 5, 7)
    assert job.delay == timedelta(0)
    assert job.not_before is None
    assert (job.dedupe_key, job.callback_url, job.parent_id, job.meta) == (None, None, None, None)


def test_prepare_by_name_uses_the_registered_defaults(
    app: pgjobs.App, emails: Task[Any, Any]
) -> None:
    job = app._prepare("emails.send", {"to": "a"}, {})
    assert (job.queue, job.priority, job.max_attempts) == ("emails", 5, 7)


def test_explicit_options_override_the_defaults(app: pgjobs.App, emails: Task[Any, Any]) -> None:
    job = app._prepare(emails, {"to": "a"}, {"queue": "urgent", "priority": -3, "max_attempts": 1})
    assert (job.queue, job.priority, job.max_attempts) == ("urgent", -3, 1)


def test_explicit_zero_priority_overrides_a_default(
    app: pgjobs.App, emails: Task[Any, Any]
) -> None:
    assert app._prepare(emails, {"to": "a"}, {"priority": 0}).priority == 0


def test_explicit_none_keeps_the_default(app: pgjobs.App, emails: Task[Any, Any]) -> None:
    job = app._prepare(emails, {"to": "a"}, {"queue": None, "priority": None})
    assert (job.queue, job.priority) == ("emails", 5)


def test_unregistered_task_gets_no_defaults_and_no_argument_check(app: pgjobs.App) -> None:
    job = app._prepare("reports.build", {"whatever": 1}, {})
    assert job.task == "reports.build"
    assert (job.queue, job.priority, job.max_attempts) == (None, None, None)
    assert job.args == '{"whatever":1}'


def test_prepare_without_args_encodes_an_empty_object(app: pgjobs.App) -> None:
    assert app._prepare("reports.build", None, {}).args == "{}"


def test_prepare_checks_arguments_of_registered_tasks(
    app: pgjobs.App, emails: Task[Any, Any]
) -> None:
    with pytest.raises(
        InvalidInput, match=r"^task emails\.send: missing a required argument: 'to'"
    ):
        app._prepare(emails, {}, {})
    with pytest.raises(
        InvalidInput, match=r"^task emails\.send: missing a required argument: 'to'"
    ):
        app._prepare("emails.send", None, {})


def test_delay_and_not_before_together_are_refused(app: pgjobs.App) -> None:
    with pytest.raises(InvalidInput) as info:
        app._prepare("t", {}, {"delay": "5m", "not_before": "2026-01-31T09:30:00Z"})
    assert str(info.value) == "give either a delay or a start time (not_before), not both"


def test_delay_is_parsed(app: pgjobs.App) -> None:
    assert app._prepare("t", {}, {"delay": "5m"}).delay == timedelta(minutes=5)
    assert app._prepare("t", {}, {"delay": 1.5}).delay == timedelta(seconds=1.5)


def test_not_before_is_parsed(app: pgjobs.App) -> None:
    job = app._prepare("t", {}, {"not_before": "2026-01-31T09:30:00Z"})
    assert job.not_before == datetime(2026, 1, 31, 9, 30, tzinfo=timezone.utc)
    assert job.delay == timedelta(0)


def test_unknown_option_is_refused_by_prepare(app: pgjobs.App) -> None:
    with pytest.raises(InvalidInput) as info:
        app._prepare("t", {}, {"qeueu": "x"})
    assert str(info.value) == f"unknown enqueue option(s) qeueu: known options are {KNOWN_OPTIONS}"


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"queue": "no spaces"}, "invalid queue name 'no spaces'"),
        ({"priority": 5000}, "priority 5000 is out of range"),
        ({"max_attempts": 0}, "max_attempts 0 is out of range"),
        ({"delay": "soon"}, "invalid delay 'soon'"),
        ({"delay": -5}, "invalid delay -5: must not be negative"),
        ({"not_before": "tomorrow"}, "invalid not_before 'tomorrow'"),
        ({"dedupe_key": ""}, "dedupe_key must be a string of 1-512 characters"),
        ({"callback_url": "ftp://x"}, "invalid callback URL 'ftp://x'"),
        ({"meta": {"b": b"x"}}, "cannot encode meta.b: bytes is not JSON-serialisable"),
    ],
)
def test_prepare_validates_options(app: pgjobs.App, options: dict[str, Any], text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        app._prepare("t", {}, options)
    assert str(info.value).startswith(text)


def test_prepare_validates_the_task_name(app: pgjobs.App) -> None:
    with pytest.raises(InvalidInput, match=r"^invalid task name 'bad name'"):
        app._prepare("bad name", {}, {})


def test_prepare_encodes_other_options(app: pgjobs.App) -> None:
    job = app._prepare(
        "t",
        {"when": datetime(2026, 1, 1, tzinfo=timezone.utc)},
        {
            "dedupe_key": "k1",
            "callback_url": "https://example.com/h",
            "meta": {"n": 1},
            "parent_id": 4,
        },
    )
    assert job.args == '{"when":"2026-01-01T00:00:00+00:00"}'
    assert (job.dedupe_key, job.callback_url, job.parent_id) == ("k1", "https://example.com/h", 4)
    assert job.meta == '{"n":1}'


def test_prepare_enforces_the_app_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGJOBS_MAX_ARGS_BYTES", raising=False)
    small = pgjobs.App("host=invalid dbname=x", max_args_bytes=20)
    assert small._prepare("t", {"a": "x" * 12}, {}).args == '{"a":"' + "x" * 12 + '"}'  # 20 bytes
    with pytest.raises(InvalidInput, match=r"^args take 21 bytes, over the limit of 20 "):
        small._prepare("t", {"a": "x" * 13}, {})


def test_size_limit_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_MAX_ARGS_BYTES", "10")
    assert pgjobs.App("host=invalid dbname=x").max_args_bytes == 10
    monkeypatch.setenv("PGJOBS_MAX_ARGS_BYTES", "lots")
    with pytest.raises(InvalidInput, match="PGJOBS_MAX_ARGS_BYTES must be a positive number"):
        pgjobs.App("host=invalid dbname=x")


# --- App._prepare_many ----------------------------------------------------------------------------


def test_prepare_many_accepts_specs_and_mappings(app: pgjobs.App, emails: Task[Any, Any]) -> None:
    jobs = app._prepare_many(
        [
            emails.spec(to="a"),
            emails.options(priority=1).spec(to="b"),
            {"task": "reports.build", "args": {"n": 1}, "queue": "reports"},
        ]
    )
    assert [(j.task, j.args, j.queue, j.priority) for j in jobs] == [
        ("emails.send", '{"to":"a"}', "emails", 5),
        ("emails.send", '{"to":"b"}', "emails", 1),
        ("reports.build", '{"n":1}', "reports", None),
    ]


def test_prepare_many_names_the_position_of_a_bad_spec(
    app: pgjobs.App, emails: Task[Any, Any]
) -> None:
    with pytest.raises(InvalidInput) as info:
        list(app._prepare_many([emails.spec(to="a"), {"task": "emails.send", "args": {}}]))
    assert str(info.value).startswith("job #1: task emails.send: missing a required argument")
    with pytest.raises(InvalidInput) as info:
        list(app._prepare_many([{"args": {}}]))
    assert str(info.value) == "job #0: each job needs a 'task'"
    with pytest.raises(InvalidInput, match=r"^job #1: each job is a JobSpec or a mapping"):
        list(app._prepare_many([{"task": "t"}, "t"]))  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match=r"^job #0: unknown enqueue option\(s\) bogus"):
        list(app._prepare_many([{"task": "t", "bogus": 1}]))


# --- App._template: validated (task, options) shapes are remembered ----------------------------


def test_a_remembered_shape_still_refuses_what_only_equals_a_valid_one(app: pgjobs.App) -> None:
    assert app._prepare("t", None, {"priority": 1}).priority == 1
    with pytest.raises(InvalidInput, match="priority must be an integer, got True"):
        app._prepare("t", None, {"priority": True})
    with pytest.raises(InvalidInput, match="priority must be an integer"):
        list(app._prepare_many([{"task": "t", "priority": 1}, {"task": "t", "priority": 1.0}]))


def test_registering_a_task_refreshes_the_remembered_defaults(app: pgjobs.App) -> None:
    assert app._prepare("late", None, {}).queue is None  # the database fills the default
    app.task(name="late", queue="slow", priority=7)(anything)
    job = app._prepare("late", None, {})
    assert (job.queue, job.priority) == ("slow", 7)


def test_unhashable_options_are_validated_every_time(app: pgjobs.App) -> None:
    first = app._prepare("t", {"a": 1}, {"meta": {"k": 1}})
    second = app._prepare("t", {"a": 2}, {"meta": {"k": 2}})
    assert (first.meta, second.meta) == ('{"k":1}', '{"k":2}')
    with pytest.raises(InvalidInput, match="meta"):
        app._prepare("t", None, {"meta": {"k": float("nan")}})


@pytest.mark.parametrize("specs", [{"task": "t"}, "t", 5])
def test_enqueue_many_refuses_what_is_not_a_list_of_specs(app: pgjobs.App, specs: Any) -> None:
    with pytest.raises(InvalidInput, match=r"^enqueue_many takes a list of job specs"):
        app.enqueue_many(specs)  # refused before any connection (the DSN is invalid)
