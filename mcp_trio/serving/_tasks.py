"""The tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) for 2026-07-28 requests.

A tool may outlive the request that called it: the client gets a ``CreateTaskResult`` (a task
id and a status) at once, and polls ``tasks/get`` for the result, answers what the task asks
with ``tasks/update``, or stops it with ``tasks/cancel``. The server decides when; here the
*tool* decides, by calling ``await ctx.run_as_task()``::

    @server.tool
    @task_support("optional")
    async def slow_compute(seconds: float, ctx: Context) -> str:
        if seconds > 0:
            await ctx.run_as_task()   # the caller gets CreateTaskResult now; the rest runs on
        await trio.sleep(seconds)
        return "done"

* ``task_support``: ``"forbidden"`` (the default: never a task), ``"optional"`` (a task when
  the request's client capabilities list the extension; otherwise ``run_as_task`` returns
  False and the call simply goes on), ``"required"`` (a request whose client cannot do
  tasks is refused with ``-32021`` naming the extension before the tool runs).
* A task-capable call runs in a task of the server's own (not the request's), from its
  start, so it can go on after the request is answered. Until it calls ``run_as_task`` it is
  an ordinary call: it may answer directly, or ask for input the stateless way (an
  ``InputRequiredResult`` round, the tool run again on the retry), which is how a tool gathers
  what it needs before it becomes a task.
* After ``run_as_task``, ``ctx.elicit``/``sample``/``list_roots`` wait for real: the task
  shows ``status: "input_required"`` and its ``inputRequests`` on ``tasks/get`` until
  ``tasks/update`` brings every answer (several at once with ``ctx.gather``); its progress
  and log messages are dropped (no request is open to carry them).
* Outcomes: the tool's value (or its own failure, ``isError``) → ``completed`` with the
  result inlined on ``tasks/get``; a protocol error (its timeout, an internal error) →
  ``failed`` with the error inlined; ``tasks/cancel`` → ``cancelled``.
* Tasks live in the process that created them, for ``DEFAULT_TASK_TTL`` after creation
  (longer while running), visible to the caller that created them only (another caller's
  task id is unknown to it: ``-32602``); at most ``MAX_TASKS`` at once per server.
* Cluster mode (``Tasks.shared``, ``_cluster.ClusterTasks``): a task is stored in Redis
  before the caller learns its id, and each move after; ``tasks/get``, ``tasks/update`` and
  ``tasks/cancel`` for a task running on another process go through Redis and the bus.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, TypeVar

import msgspec
import trio
from msgspec import UNSET, Raw

from .._request_state import subject_of
from ..offer._results import unsendable_reason, unsendable_reply
from ..protocol._envelope import SERVER_INFO_KEY, Envelope
from ..protocol._errors import (
    InternalError,
    InvalidParams,
    MissingClientCapability,
    QuotaExceeded,
    ServerOverloaded,
)
from ..protocol._jsonrpc import Response, error_object
from ._outcome import error_of
from ._replay import InputRequired, ProtocolEscape, unwrap
from ._request import InFlight

logger = logging.getLogger("mcp_trio.tasks")

EXTENSION = "io.modelcontextprotocol/tasks"
TaskSupport = Literal["forbidden", "optional", "required"]
#: Milliseconds a task stays readable after it was created (longer while it still runs).
DEFAULT_TASK_TTL_MS = 600_000
#: Milliseconds a client is advised to wait between two ``tasks/get``.
POLL_INTERVAL_MS = 250
#: Tasks kept at once per server; past it a call that would become a task is refused (-32030).
MAX_TASKS = 1000
TERMINAL = frozenset({"completed", "failed", "cancelled"})
_ATTRIBUTE = "__mcp_task_support__"
#: Seconds a task's last move may take to be stored (cluster mode) after it was cancelled.
_STORE_DEADLINE = 2.0

F = TypeVar("F", bound=Callable[..., Any])


def task_support(mode: TaskSupport) -> Callable[[F], F]:
    """Declare whether a tool may run as a task (use with ``@server.tool``, either order)."""
    if mode not in ("forbidden", "optional", "required"):
        raise ValueError(f"task support must be 'forbidden', 'optional' or 'required', not {mode!r}")

    def mark(fn: F) -> F:
        setattr(fn, _ATTRIBUTE, mode)
        return fn

    return mark


def support_of(tool: Any) -> TaskSupport:
    return getattr(tool.fn, _ATTRIBUTE, "forbidden")


def client_can_task(envelope: Envelope | None) -> bool:
    if envelope is None:
        return False
    extensions = envelope.profile.capabilities.get("extensions")
    return isinstance(extensions, dict) and EXTENSION in extensions


def missing_extension() -> MissingClientCapability:
    return MissingClientCapability(
        f"this request needs the client capability extensions[{EXTENSION!r}] (tasks), which its "
        "params._meta['io.modelcontextprotocol/clientCapabilities'] does not declare",
        {"requiredCapabilities": {"extensions": {EXTENSION: {}}}})


class SharedTasks(Protocol):
    """Tasks kept where every process sees them (cluster mode: ``_cluster.ClusterTasks``)."""

    node_id: str
    #: Milliseconds a task stays readable after its last move (``ttlMs``).
    ttl_ms: int

    async def created(self, task: Task) -> None: ...

    async def moved(self, task: Task) -> None: ...

    async def get(self, subject: str, task_id: str, now: str) -> dict[str, Any] | None: ...

    async def cancel(self, subject: str, task_id: str, now: str) -> bool: ...

    async def answer(self, subject: str, task_id: str, responses: bytes) -> bool: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Asked:
    __slots__ = ("request", "response", "answered")

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.response: Raw | None = None
        self.answered = trio.Event()


class Task:
    """One task: its status and, once it has one, its outcome."""

    def __init__(self, subject: str) -> None:
        self.task_id = secrets.token_urlsafe(16)
        self.subject = subject
        self.status = "working"
        self.created_at = self.updated_at = _now()
        self.expires = time.monotonic() + DEFAULT_TASK_TTL_MS / 1000
        self.result: Raw | None = None
        self.error: dict[str, Any] | None = None
        self.asked: dict[str, _Asked] = {}
        self.scope: trio.CancelScope | None = None
        #: Set when the tool called ``run_as_task``: the request has its CreateTaskResult.
        self.escalated = trio.Event()
        #: The caller's ``tasks`` quota this task holds until it expires: (quotas, key).
        self.quota: tuple[Any, Any] | None = None
        #: Where its moves are stored for other processes (cluster mode), once escalated.
        self.shared: SharedTasks | None = None

    def touch(self, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        self.updated_at = _now()

    def envelope(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "status": self.status, "createdAt": self.created_at,
                "lastUpdatedAt": self.updated_at, "ttlMs": DEFAULT_TASK_TTL_MS, "pollIntervalMs": POLL_INTERVAL_MS}

    async def ask(self, key: str, request: dict[str, Any]) -> Raw:
        """Wait for ``tasks/update`` to answer ``request`` (status ``input_required`` meanwhile)."""
        asked = self.asked[key] = _Asked(request)
        self.touch("input_required")
        if self.shared is not None:
            await self.shared.moved(self)
        try:
            await asked.answered.wait()
        finally:
            self.asked.pop(key, None)
            if not self.asked and self.status == "input_required":
                self.touch("working")
                if self.shared is not None:
                    with trio.CancelScope(shield=True):
                        await self.shared.moved(self)
        assert asked.response is not None
        return asked.response

    def answer(self, responses: dict[str, Raw]) -> None:
        for key, response in responses.items():
            asked = self.asked.get(key)
            if asked is not None and not asked.answered.is_set():
                asked.response = response
                asked.answered.set()
        self.touch()


class _Dropping:
    """The connection a task's tool sees once the request is answered: notifications are
    dropped (nothing carries them any more); everything else is the connection's."""

    def __init__(self, conn: Any, task: Task) -> None:
        self._conn = conn
        self._task = task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def notify(self, method: str, params: Any = None) -> None:
        if not self._task.escalated.is_set():
            await self._conn.notify(method, params)


class Tasks:
    """The tasks of one served server, and the nursery their tools run in."""

    def __init__(self, server_info: Any) -> None:
        self._server_info = server_info
        self.tasks: dict[str, Task] = {}
        self._nursery: trio.Nursery | None = None
        #: Cluster mode: tasks kept in Redis too, for every process (set by the cluster node).
        self.shared: SharedTasks | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the tasks' nursery until cancelled (the supervisor's nursery runs this)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    # -- tools/call of a task-capable tool --------------------------------------------------
    async def call_tool(self, peer: Any, call: InFlight, run: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``run(peer)`` (the call's handler) in a task of our own: its answer, or
        ``CreateTaskResult`` once the tool calls ``run_as_task``. Cancelling the request before
        that cancels the tool."""
        nursery = self._nursery
        if nursery is None:  # not served by a running supervisor: an ordinary call
            return await run(peer)
        self._expire()
        task = Task(subject_of(peer.principal))
        call.task = task
        outcome: list[Any] = []
        finished = trio.Event()
        proxy = _Dropping(peer, task)

        async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with trio.CancelScope() as scope:
                task.scope = scope
                task_status.started()
                try:
                    outcome.append(("ok", await run(proxy)))
                except BaseException as exc:  # handed to the request, or recorded on the task
                    if isinstance(exc, trio.Cancelled):
                        raise
                    outcome.append(("raise", exc))
                finally:
                    finished.set()
            if scope.cancelled_caught:
                task.touch("cancelled")
            elif task.escalated.is_set():
                self._settle(task, call.method, outcome[0] if outcome else None)
            if task.shared is not None:
                with trio.move_on_after(_STORE_DEADLINE) as storing:
                    storing.shield = True  # a task cancelled by shutdown is stored as such
                    await task.shared.moved(task)

        await nursery.start(runner)
        try:
            async with trio.open_nursery() as waiter:
                waiter.start_soon(_set_when, finished.wait, waiter.cancel_scope)
                waiter.start_soon(_set_when, task.escalated.wait, waiter.cancel_scope)
        except BaseException:
            if not task.escalated.is_set() and task.scope is not None:
                task.scope.cancel()
            raise
        if task.escalated.is_set():
            shared = self.shared
            if shared is not None:
                # Stored before the caller learns the id: an acknowledged task is never lost,
                # whichever process the caller asks next (and whatever becomes of this one).
                try:
                    await shared.created(task)
                except BaseException:
                    if task.scope is not None:
                        task.scope.cancel()
                    self._forget(task)
                    raise
                task.shared = shared
                if task.status != "working":  # it moved (or finished) while being stored
                    await shared.moved(task)
            body = {"resultType": "task", **task.envelope(), "_meta": {SERVER_INFO_KEY: self._server_info}}
            return Raw(msgspec.json.encode(body))
        kind, value = outcome[0]
        if kind == "raise":
            raise value
        return value

    def escalate(self, call: InFlight, peer: Any = None) -> bool:
        """``ctx.run_as_task()``: make the call a task now (False when it cannot be one).

        Refused (raised out of the tool) past ``MAX_TASKS`` on the server (``-32030``) or past
        the caller's ``max_tasks_per_principal`` quota (``-32032``)."""
        task = call.task
        if task is None:
            return False
        if task.escalated.is_set():
            return True
        if len(self.tasks) >= MAX_TASKS:
            raise ProtocolEscape(ServerOverloaded(f"too many tasks ({MAX_TASKS}); try again later"))
        if peer is not None:
            quotas = peer.supervisor.quotas
            try:
                task.quota = (quotas, quotas.acquire("tasks", peer.principal, peer.peer))
            except QuotaExceeded as exc:
                raise ProtocolEscape(exc) from None
        self.tasks[task.task_id] = task  # visible to tasks/get before the client hears of it
        task.escalated.set()
        return True

    def _settle(self, task: Task, method: str, outcome: tuple[str, Any] | None) -> None:
        """Record an escalated task's outcome: its result, or its error (``_outcome.error_of``,
        the conversion every request's failure takes)."""
        task.expires = max(task.expires, time.monotonic() + DEFAULT_TASK_TTL_MS / 1000)
        if outcome is None:  # pragma: no cover - the runner always records one
            task.error = msgspec.structs.asdict(error_object(InternalError("the task ended without an outcome")))
            task.touch("failed")
            return
        kind, value = outcome
        if kind == "ok":
            try:
                task.result = Raw(msgspec.json.encode(value))
            except (TypeError, ValueError, OverflowError) as exc:  # text with a lone surrogate, say
                logger.warning("task %s: its result was refused: %s", task.task_id, unsendable_reason(exc))
                replacement = unsendable_reply(Response(0, value), exc)
                if type(replacement) is Response:
                    task.result = Raw(msgspec.json.encode(replacement.result))
                else:
                    task.error = msgspec.structs.asdict(replacement.error)  # type: ignore[union-attr]
                    task.touch("failed")
                    return
            task.touch("completed")
            return
        if isinstance(value, BaseExceptionGroup):
            try:
                value = unwrap(value)
            except BaseExceptionGroup:
                pass
        if isinstance(value, InputRequired):  # pragma: no cover - live asks never raise it
            value = InternalError("the task asked for input it could not wait for")
        logger.debug("task %s failed", task.task_id)
        error = error_of(value, method, stateless=True)
        task.error = {"code": error.code, "message": error.message, **({} if error.data is None else {"data": error.data})}
        task.touch("failed")

    # -- tasks/get, tasks/update, tasks/cancel ------------------------------------------------
    async def get(self, peer: Any, call: InFlight) -> Raw:
        task, params = self._find_for(peer, call)
        if task is None:  # cluster mode: a task of another process
            found = await self.shared.get(subject_of(peer.principal), params.task_id, _now())  # type: ignore[union-attr]
            if found is None:
                raise _unknown(params.task_id)
            body = {"resultType": "complete", **found, "ttlMs": round(self.shared.ttl_ms), "pollIntervalMs": POLL_INTERVAL_MS,  # type: ignore[union-attr]
                    "_meta": {SERVER_INFO_KEY: self._server_info}}
            return Raw(msgspec.json.encode(body))
        body: dict[str, Any] = {"resultType": "complete", **task.envelope()}
        if task.status == "input_required" and task.asked:
            body["inputRequests"] = {key: asked.request for key, asked in task.asked.items()}
        if task.result is not None:
            body["result"] = task.result
        if task.error is not None:
            body["error"] = task.error
        body["_meta"] = {SERVER_INFO_KEY: self._server_info}
        return Raw(msgspec.json.encode(body))

    async def update(self, peer: Any, call: InFlight) -> Raw:
        task, params = self._find_for(peer, call)
        if params.input_responses is UNSET:
            raise InvalidParams("tasks/update needs inputResponses")
        if task is None:
            responses = msgspec.json.encode(params.input_responses)
            if not await self.shared.answer(subject_of(peer.principal), params.task_id, responses):  # type: ignore[union-attr]
                raise _unknown(params.task_id)
            return self._ack()
        task.answer(params.input_responses)
        return self._ack()

    async def cancel(self, peer: Any, call: InFlight) -> Raw:
        task, params = self._find_for(peer, call)
        if task is None:
            if not await self.shared.cancel(subject_of(peer.principal), params.task_id, _now()):  # type: ignore[union-attr]
                raise _unknown(params.task_id)
            return self._ack()
        if task.status not in TERMINAL and task.scope is not None:
            task.scope.cancel()
            task.touch("cancelled")
        return self._ack()

    def _find_for(self, peer: Any, call: InFlight) -> tuple[Task | None, Any]:
        """The caller's task here; None when it may be another process's (cluster mode)."""
        if not client_can_task(call.envelope):
            raise missing_extension()
        params = call.decode()
        self._expire()
        if not isinstance(params.task_id, str):
            raise _unknown(params.task_id)
        task = self.tasks.get(params.task_id)
        if task is None or task.subject != subject_of(peer.principal):
            if self.shared is not None and task is None:
                return None, params
            raise _unknown(params.task_id)
        return task, params

    # -- what other processes ask of tasks running here (cluster mode) -----------------------
    def cancel_here(self, subject: str, task_id: str) -> None:
        """``tasks/cancel`` reached another process: stop the task if it runs here."""
        task = self.tasks.get(task_id)
        if task is not None and task.subject == subject and task.status not in TERMINAL and task.scope is not None:
            task.scope.cancel()
            task.touch("cancelled")

    def answer_here(self, subject: str, task_id: str, responses: bytes) -> None:
        """``tasks/update`` reached another process: hand its answers to the task here."""
        task = self.tasks.get(task_id)
        if task is None or task.subject != subject:
            return
        try:
            answers = msgspec.json.decode(responses, type=dict[str, Raw])
        except (msgspec.DecodeError, msgspec.ValidationError):
            logger.debug("task %s: undecodable answers from another process", task_id)
            return
        task.answer(answers)

    def _forget(self, task: Task) -> None:
        self.tasks.pop(task.task_id, None)
        if task.quota is not None:
            quotas, key = task.quota
            quotas.release("tasks", key)
            task.quota = None

    def _ack(self) -> Raw:
        return Raw(msgspec.json.encode({"resultType": "complete", "_meta": {SERVER_INFO_KEY: self._server_info}}))

    def _expire(self) -> None:
        now = time.monotonic()
        for task_id in [t.task_id for t in self.tasks.values() if t.expires < now and t.status in TERMINAL]:
            task = self.tasks.pop(task_id)
            if task.quota is not None:
                quotas, key = task.quota
                quotas.release("tasks", key)


def _unknown(task_id: Any) -> InvalidParams:
    return InvalidParams(f"unknown task: {task_id!r}", {"taskId": task_id})


async def _set_when(wait: Callable[[], Any], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()

