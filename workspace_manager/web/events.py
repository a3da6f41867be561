"""The manager's live events: one `EventHub` per manager, fed by its EventSink, its run
storage and its daemon, read by the web page's event stream (web/sse.py, `GET /api/events`).

Kinds and their data (JSON objects; docs/web.md, "Live events"):
- `location`: {"name": NAME, **http.view.location_document(view)} on every state change (a
  location removed by a reload also carries "removed": true);
- `run`: {"event": "queued"|"starting"|"started"|"success"|"failure"|"canceling"|"canceled",
  **http.api.run_summary(record)};
- `log`: {"run_id", "seq", "time", "stream", "level", "text"}: one line of a run, published
  once its batch is committed, so `seq` is the storage's own (storage/writer.py, `on_logs`)
  and a reader that then reads the storage after SEQ misses none and gets none twice;
- `tick`: http.api.plain(TickRecord), once the tick has its result;
- `instigator`: {"kind": "schedule"|"sensor", "location", "name", "status"} when a schedule
  or sensor is started or stopped;
- `resync`: {}: given to one subscriber in place of what its full queue dropped.

Why it is shaped so:
- `publish` is a plain call on the event loop, O(subscribers of that kind, or of that run
  for `log`), that never blocks and never raises: the supervision code calls it inline, and a
  page that reads slowly must cost the manager nothing but a bounded queue.
- Each subscriber has its own bounded queue (QUEUE_EVENTS). A full queue is cleared and gets
  ONE `resync` event: the subscriber re-reads the state (a page reloads its data; a run's
  stream re-reads the dropped lines from the storage, web/sse.py) instead of the manager
  keeping an unbounded backlog for a reader that does not read.
- An event is encoded once per transport (its SSE frame and its WebSocket message are built
  on first use and shared by every stream), so 50 open pages cost one JSON encoding per
  event, not 50.
- Ids are one increasing integer per hub (1, 2, ...), given only to events someone gets:
  a stream's `id:` lines increase, and an id says which events a subscriber has seen.
- Everything happens on the loop's thread: no locks.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
from typing import Any, Deque, Dict, FrozenSet, Iterable, List, Optional, Set

log = logging.getLogger(__name__)

#: Every kind a subscriber may ask for; `log` only with a run id.
KINDS = ("location", "run", "tick", "instigator", "log")
#: What a subscriber gets when it names no kinds: everything but the (many) log lines.
DEFAULT_KINDS = frozenset(("location", "run", "tick", "instigator"))
RESYNC = "resync"
#: Events one subscriber may have waiting before it is told to resync: a page that follows
#: a run writing 10,000 lines a second is behind by 100 ms at most before that.
QUEUE_EVENTS = 1000


class Event:
    """One published event: `id` (increasing per hub), `kind`, `data` (a JSON-able dict)
    and, for `log`, the `run_id` it belongs to. Its SSE frame (`frame()`) and its WebSocket
    message (`message()`) are each encoded once."""

    __slots__ = ("id", "kind", "data", "run_id", "_frame", "_message")

    def __init__(self, id: int, kind: str, data: Dict[str, Any], run_id: Optional[str] = None):
        self.id = id
        self.kind = kind
        self.data = data
        self.run_id = run_id
        self._frame: Optional[bytes] = None
        self._message: Optional[str] = None

    def message(self) -> str:
        """The event as one WebSocket text message (web/ws.py): the JSON object
        `{"id": N, "event": KIND, "data": {...}}`, strict JSON as `frame()`'s data."""
        if self._message is None:
            self._message = (
                f'{{"id": {self.id}, "event": {json.dumps(self.kind)}, '
                f'"data": {strict_json(self.data)}}}'
            )
        return self._message

    def frame(self) -> bytes:
        """The event as Server-Sent Events text (WHATWG HTML, "Server-sent events"): `id:`,
        `event:` and one `data:` line of strict JSON (json.dumps escapes every line break,
        so one line always holds it), then a blank line."""
        if self._frame is None:
            self._frame = (
                f"id: {self.id}\nevent: {self.kind}\ndata: {strict_json(self.data)}\n\n"
            ).encode()
        return self._frame

    def __repr__(self) -> str:
        return f"Event({self.id}, {self.kind!r}, {self.data!r})"


def strict_json(value: Any) -> str:
    """RFC 8259 JSON on one line: a non-finite float becomes the string "NaN", "Infinity"
    or "-Infinity", anything else not JSON its str() (as the JSON API answers).

    The fast path is json's cached C encoder (json.dumps with its default arguments: 3x
    faster than one built per call); only an answer that may hold a non-finite number, or
    a value json cannot encode, takes the strict path."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = None
    if text is None or "NaN" in text or "Infinity" in text:
        try:
            text = json.dumps(value, allow_nan=False, default=str)
        except ValueError:  # only a non-finite float makes allow_nan=False refuse
            from workspace_manager.storage.records import finite_json

            text = json.dumps(finite_json(value), allow_nan=False, default=str)
    return text


class Subscription:
    """One reader's events, in order: an async iterator (`async for event in sub`) that ends
    once the subscription or its hub is closed and its queue is empty. `close()` is
    idempotent and may be called from anywhere on the loop (e.g. when the client leaves)."""

    def __init__(
        self, hub: EventHub, kinds: FrozenSet[str], run_id: Optional[str], size: int
    ) -> None:
        self.hub = hub
        self.kinds = kinds
        self.run_id = run_id
        self.size = size
        #: Where this subscriber started: the hub's last event id when it subscribed.
        self.start_id = hub.last_id
        #: How many times its queue overflowed (each gave one `resync`).
        self.overflows = 0
        self._queue: Deque[Event] = collections.deque()
        self._waiter: Optional[asyncio.Future] = None
        self.closed = False

    # -- the hub's side -----------------------------------------------------------------------

    def _put(self, event: Event) -> None:
        if self.closed:
            return
        if len(self._queue) >= self.size:
            self._overflow(event.id)
        else:
            self._queue.append(event)
        self._wake()

    def _put_many(self, events: List[Event]) -> None:
        """Several events at once (a committed batch of a run's lines): one deque extend."""
        if self.closed or not events:
            return
        if len(self._queue) + len(events) > self.size:
            self._overflow(events[-1].id)
        else:
            self._queue.extend(events)
        self._wake()

    def _overflow(self, last_id: int) -> None:
        """The queue is full: drop it, and what did not fit, for ONE resync whose id is the
        last event dropped (the reader re-reads everything up to it)."""
        self._queue.clear()
        self.overflows += 1
        self._queue.append(Event(last_id, RESYNC, {}))

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the reader's side ----------------------------------------------------------------------

    def get_nowait(self) -> Optional[Event]:
        """The next waiting event, or None."""
        return self._queue.popleft() if self._queue else None

    def take(self, most: int) -> List[Event]:
        """Up to `most` waiting events, oldest first (a writer's batch)."""
        queue = self._queue
        if len(queue) <= most:
            out = list(queue)
            queue.clear()
            return out
        return [queue.popleft() for _ in range(most)]

    def pending(self) -> int:
        return len(self._queue)

    async def next(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event; None when `timeout` seconds pass without one. Raises
        StopAsyncIteration once closed and drained."""
        if not self._queue:
            if self.closed:
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, self._wake) if timeout is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._queue:
                if self.closed:
                    raise StopAsyncIteration
                return None
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await self.next()
            if event is not None:
                return event

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.hub._forget(self)
        self._wake()


class EventHub:
    """Publish once, deliver to every interested subscriber (see the module doc)."""

    def __init__(self, queue_events: int = QUEUE_EVENTS) -> None:
        self.queue_events = queue_events
        self.last_id = 0
        self.closed = False
        #: Queues that overflowed, over every subscriber (each overflow turned a whole
        #: queue into one resync).
        self.overflows = 0
        self._by_kind: Dict[str, Set[Subscription]] = {k: set() for k in KINDS if k != "log"}
        self._by_run: Dict[str, Set[Subscription]] = {}
        self._all: Set[Subscription] = set()

    # -- publishing -------------------------------------------------------------------------

    def wants(self, kind: str, run_id: Optional[str] = None) -> bool:
        """Whether anyone subscribes to `kind` (for `log`: to `run_id`'s lines): callers skip
        building an event nobody reads."""
        if kind == "log":
            return run_id in self._by_run
        return bool(self._by_kind.get(kind))

    def publish(self, kind: str, data: Dict[str, Any]) -> None:
        """Deliver one event to its subscribers. On the loop's thread; never blocks, never
        raises (a bug here is logged, the caller goes on)."""
        try:
            if self.closed:
                return
            run_id = data.get("run_id") if kind == "log" else None
            subs = self._by_run.get(str(run_id)) if kind == "log" else self._by_kind.get(kind)
            if not subs:
                return
            self.last_id += 1
            event = Event(self.last_id, kind, data, run_id)
            for sub in subs:
                before = sub.overflows
                sub._put(event)
                self.overflows += sub.overflows - before
        except Exception as exc:  # never let a page's stream take down the supervision code
            _bug(f"publishing a {kind} event", exc)

    def publish_logs(self, lines: Iterable[Any]) -> None:
        """Committed run log lines (storage.records.LogLine with their `seq`): one `log`
        event each, for the subscribers of its run. Lines without a seq (not stored) are
        skipped. Called by AsyncStorage once a batch is committed (`on_logs`)."""
        if not self._by_run or self.closed:
            return
        try:
            by_run: Dict[str, List[Event]] = {}
            for line in lines:
                if line.seq and line.run_id in self._by_run:
                    self.last_id += 1
                    event = Event(self.last_id, "log", log_data(line), line.run_id)
                    by_run.setdefault(line.run_id, []).append(event)
            for run_id, events in by_run.items():
                for sub in self._by_run.get(run_id, ()):
                    before = sub.overflows
                    sub._put_many(events)
                    self.overflows += sub.overflows - before
        except Exception as exc:  # never let a page's stream take down the storage's callback
            _bug("publishing log lines", exc)

    def _publish_built(self, kind: str, build: Any, *args: Any) -> None:
        """Publish `build(*args)`; an error building it is logged, never raised (the
        EventSink's caller is the supervision code)."""
        try:
            data = build(*args)
        except Exception as exc:
            _bug(f"building a {kind} event", exc)
            return
        self.publish(kind, data)

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(
        self, kinds: Optional[Iterable[str]] = None, run_id: Optional[str] = None
    ) -> Subscription:
        """A new subscription to `kinds` (default DEFAULT_KINDS), plus the `log` events of
        `run_id` when given. ValueError for an unknown kind, or `log` without a run. A hub
        already closed gives a subscription that is already closed (it ends at once)."""
        wanted = DEFAULT_KINDS if kinds is None else frozenset(kinds)
        unknown = sorted(wanted - set(KINDS))
        if unknown:
            raise ValueError(
                f"unknown event kind {', '.join(map(repr, unknown))}; kinds: {', '.join(KINDS)}"
            )
        if run_id is not None:
            wanted = wanted | {"log"}
        elif "log" in wanted:
            raise ValueError("log events are given for one run: add run=RUN_ID")
        sub = Subscription(self, wanted, run_id, self.queue_events)
        if self.closed:
            sub.closed = True
            return sub
        self._all.add(sub)
        for kind in wanted:
            if kind == "log":
                self._by_run.setdefault(str(run_id), set()).add(sub)
            else:
                self._by_kind[kind].add(sub)
        return sub

    def _forget(self, sub: Subscription) -> None:
        self._all.discard(sub)
        for kind in sub.kinds:
            if kind == "log":
                subs = self._by_run.get(str(sub.run_id))
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_run[str(sub.run_id)]
            else:
                self._by_kind[kind].discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._all)

    def close(self) -> None:
        """End every subscription (each iterator ends once drained) and refuse new ones:
        the manager's shutdown, so that no event stream holds its server open."""
        self.closed = True
        for sub in list(self._all):
            sub.close()

    # -- the manager's sources ----------------------------------------------------------------

    def observe_events(self, sink: Any, manager: Any) -> Any:
        """`sink` (a supervisor.manager.EventSink) that also publishes its location
        transitions, run events, ticks and instigator changes here (as
        supervisor/metrics.py's `observe_events` counts them)."""
        inner_transition, inner_run, inner_tick = sink.transition, sink.run, sink.tick
        inner_instigator = getattr(sink, "instigator", lambda doc: None)

        def transition(name: str, t: Any) -> None:
            inner_transition(name, t)
            if self.wants("location"):
                self._publish_built("location", location_event, manager, name, t)

        def run(record: Any, event: str) -> None:
            inner_run(record, event)
            if self.wants("run"):
                self._publish_built("run", run_event, record, event)

        def tick(tick: Any) -> None:
            inner_tick(tick)
            if self.wants("tick"):
                self._publish_built("tick", tick_event, tick, getattr(manager, "daemon", None))

        def instigator(doc: Dict[str, Any]) -> None:
            inner_instigator(doc)
            self.publish("instigator", doc)

        fields = {f.name for f in dataclasses.fields(sink)}
        changes: Dict[str, Any] = {"transition": transition, "run": run, "tick": tick}
        if "instigator" in fields:
            changes["instigator"] = instigator
        return dataclasses.replace(sink, **changes)


def _bug(what: str, exc: BaseException) -> None:
    """A bug's one line in the manager's log (its traceback at DEBUG), as the API's."""
    log.error("events: %s failed: %s: %s", what, type(exc).__name__, exc)
    log.debug("events: %s failed", what, exc_info=exc)


def log_data(line: Any) -> Dict[str, Any]:
    """The data of a `log` event of a stored LogLine: {"run_id", "seq", "time" (unix s),
    "stream" (stdout, stderr, log, wsm), "level" (of a context.log line, else None), "text"}."""
    return {
        "run_id": line.run_id,
        "seq": line.seq,
        "time": line.time,
        "stream": line.stream,
        "level": line.level,
        "text": line.text,
    }


def run_event(record: Any, event: str) -> Dict[str, Any]:
    """The `run` event of a run's new status `event` (lower case, e.g. "queued")."""
    from workspace_manager.http.api import run_summary

    return {"event": event, **run_summary(record)}


def tick_event(tick: Any, daemon: Any = None) -> Dict[str, Any]:
    """The `tick` event of a TickRecord with its result; a schedule's also carries its
    `next_tick` (unix time, or None when stopped), so an open page moves it forward."""
    from workspace_manager.http.api import plain

    data = plain(tick)
    if daemon is not None and getattr(tick, "kind", None) == "schedule":
        data["next_tick"] = daemon.next_tick_of("schedule", tick.location, tick.name)
    return data


def location_event(manager: Any, name: str, t: Any) -> Dict[str, Any]:
    """The `location` event of a transition of location `name`: its whole status document,
    as `GET /status` gives it, read from the manager's own state (never the location). A
    location no longer in the manager (removed by a reload, stopping) is given by its new
    state alone, with "removed": true."""
    from workspace_manager.http.view import LocationView, location_document

    loc = manager.locations.get(name)
    if loc is None:
        doc = location_document(LocationView(name=name, state=t.new.value))
        return {"name": name, **doc, "removed": True}
    return {"name": name, **location_document(manager._location_view(loc))}


__all__: List[str] = ["EventHub", "Subscription", "Event", "KINDS", "DEFAULT_KINDS", "RESYNC"]
