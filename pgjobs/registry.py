"""Tasks: a handler function registered on an :class:`~pgjobs.app.App` with its defaults.

A *task* is the definition (name, handler, queue, priority, attempts, timeout, retry policy);
a *job* is one run of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pgjobs import validation
from pgjobs.backoff import DEFAULT_POLICY, RetryPolicy
from pgjobs.callbacks import CALLBACK_TASK
from pgjobs.client import OPTION_NAMES, EnqueueOptions
from pgjobs.durations import parse_duration
from pgjobs.errors import InvalidInput
from pgjobs.http_task import HTTP_TASK

if TYPE_CHECKING:
    from pgjobs.app import App, Job

P = ParamSpec("P")
BATCH_SIZE_MAX = 10_000
BATCH_WAIT_DEFAULT = "1s"
R = TypeVar("R")
#: pgjobs' own tasks, run by every worker whatever its App (pgjobs/worker/builtins.py). An
#: App may not register a task of the same name: its workers would silently run it instead.
BUILTIN_TASK_NAMES = frozenset({CALLBACK_TASK, HTTP_TASK})


@dataclass(frozen=True)
class JobSpec:
    """One job of a bulk enqueue (:meth:`App.enqueue_many`): build it with
    ``task.spec(**kwargs)`` (arguments checked) or directly."""

    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    options: EnqueueOptions = field(default_factory=EnqueueOptions)


def check_options(options: Mapping[str, Any]) -> EnqueueOptions:
    """Turn keyword options into :class:`EnqueueOptions`, refusing unknown names."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise InvalidInput(
            f"unknown enqueue option(s) {', '.join(unknown)}: known options are "
            f"{', '.join(sorted(OPTION_NAMES))}"
        )
    return EnqueueOptions(**options)


class Task(Generic[P, R]):
    """A registered handler. Calling it calls the handler directly (handy in tests);
    ``enqueue`` creates a job that a worker will run."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str | None,
        priority: int | None,
        max_attempts: int | None,
        timeout: str | float | timedelta | None,
        retry: RetryPolicy | Mapping[type[BaseException], RetryPolicy | None] | None,
        batch_size: int | None = None,
        batch_wait: str | float | timedelta | None = None,
        builtin: bool = False,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = validation.task_name(name)
        if self.name in BUILTIN_TASK_NAMES and not builtin:
            raise InvalidInput(
                f"task name {name!r} is reserved for pgjobs' built-in task of that name, which "
                "every worker runs: choose another name"
            )
        self.queue = validation.queue_name(queue) if queue is not None else None
        self.priority = validation.priority(priority) if priority is not None else None
        self.max_attempts = (
            validation.max_attempts(max_attempts) if max_attempts is not None else None
        )
        self.timeout = parse_duration(timeout, field="timeout") if timeout is not None else None
        #: A batch task's handler receives a list of jobs (see pgjobs.worker.batches).
        self.batch_size: int | None = None
        self.batch_wait = timedelta(0)
        if batch_size is not None or batch_wait is not None:
            if (
                isinstance(batch_size, bool)
                or not isinstance(batch_size, int)
                or not (1 <= batch_size <= BATCH_SIZE_MAX)
            ):
                raise InvalidInput(
                    f"task {name}: batch_size must be a whole number from 1 to {BATCH_SIZE_MAX}"
                )
            self.batch_size = batch_size
            self.batch_wait = parse_duration(
                batch_wait if batch_wait is not None else BATCH_WAIT_DEFAULT, field="batch_wait"
            )
        # One policy for every error, or a policy per exception type (first match in order;
        # None: that error ends the job at once); errors not listed get the default policy.
        if isinstance(retry, Mapping):
            for kind, policy in retry.items():
                if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                    raise InvalidInput(
                        f"task {name}: retry keys must be exception types, got {kind!r}"
                    )
                if policy is not None and not isinstance(policy, RetryPolicy):
                    raise InvalidInput(f"task {name}: retry values must be RetryPolicy or None")
            self.retry: RetryPolicy = DEFAULT_POLICY
            self.retry_on: dict[type[BaseException], RetryPolicy | None] = dict(retry)
        else:
            self.retry = retry or DEFAULT_POLICY
            self.retry_on = {}
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        kinds = inspect.Parameter
        params = self.signature.parameters.values()
        # Fast path of check_args: keyword names allowed and required, computed once.
        self._keywords = frozenset(
            p.name for p in params if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
        )
        self._required = frozenset(
            p.name
            for p in params
            if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY) and p.default is p.empty
        )
        self._any_keyword = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self._simple = not any(
            p.kind is kinds.POSITIONAL_ONLY and p.default is p.empty for p in params
        )
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<pgjobs task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def check_args(self, kwargs: Mapping[str, Any]) -> None:
        """Refuse arguments the handler could not be called with (checked at enqueue time).
        A batch handler takes the list of jobs: each job's arguments are its own business."""
        if self.batch_size is not None:
            return
        keys = kwargs.keys()
        if (
            self._simple
            and self._required <= keys
            and (self._any_keyword or keys <= self._keywords)
        ):
            return
        try:
            self.signature.bind(**kwargs)
        except TypeError as exc:
            raise InvalidInput(
                f"task {self.name}: {exc} (the handler takes {self.signature})"
            ) from None

    def policy_for(self, error: BaseException) -> RetryPolicy | None:
        """The retry policy for this error (None: do not retry, end ``failed``)."""
        for kind, policy in self.retry_on.items():
            if isinstance(error, kind):
                return policy
        return self.retry

    def defaults(self) -> EnqueueOptions:
        return EnqueueOptions(
            queue=self.queue, priority=self.priority, max_attempts=self.max_attempts
        )

    def options(self, *, connection: Any = None, **options: Any) -> TaskCall:
        """Bind enqueue options (queue, priority, delay, not_before, max_attempts,
        dedupe_key, callback_url, meta) and optionally a connection or session whose
        transaction the job joins::

            send_email.options(delay="5m", connection=session).enqueue(to="a@example.com")
        """
        return TaskCall(self, check_options(options), connection)

    def enqueue(self, **kwargs: Any) -> Job:
        """Enqueue a job of this task with ``kwargs`` as its arguments; returns the job."""
        return TaskCall(self, EnqueueOptions(), None).enqueue(**kwargs)

    async def enqueue_async(self, **kwargs: Any) -> Job:
        return await TaskCall(self, EnqueueOptions(), None).enqueue_async(**kwargs)

    def spec(self, **kwargs: Any) -> JobSpec:
        """A :class:`JobSpec` for bulk enqueue, arguments checked against the handler."""
        return TaskCall(self, EnqueueOptions(), None).spec(**kwargs)


@dataclass(frozen=True)
class TaskCall:
    """A task with enqueue options bound (see :meth:`Task.options`)."""

    task: Task[Any, Any]
    options: EnqueueOptions
    connection: Any = None

    def enqueue(self, **kwargs: Any) -> Job:
        self.task.check_args(kwargs)
        return self.task.app.enqueue(
            self.task.name, kwargs, connection=self.connection, **self.options.__dict__
        )

    async def enqueue_async(self, **kwargs: Any) -> Job:
        self.task.check_args(kwargs)
        return await self.task.app.enqueue_async(
            self.task.name, kwargs, connection=self.connection, **self.options.__dict__
        )

    def spec(self, **kwargs: Any) -> JobSpec:
        self.task.check_args(kwargs)
        return JobSpec(self.task.name, kwargs, self.options)
