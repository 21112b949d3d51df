"""The protocol a worker must follow, checked frame by frame:

    ready, then for each item in order: start, result or error; then done

with `flag` frames allowed anywhere. `run_worker` follows one worker through it and
says why it stopped (Stop); a frame out of place is a violation."""
from __future__ import annotations

import time
from enum import Enum
from typing import Callable

from ..rubric import Item
from .process import _Worker, _tail_line
from .results import FLAG_KINDS, Failed, Flag, Observed

GAP_LIMIT = 15.0  # seconds the worker may take between one item's result and the next start
MAX_NOTES = 20  # import notes kept per submission


def _flag_of(message) -> Flag | None:
    """The flag a message raises: a worker's signed flag frame, a decoy write, or a frame
    that failed authentication (a stream cut inside a frame is a crash, not a flag)."""
    if isinstance(message, dict):
        if message.get("type") == "flag" and message.get("kind") in FLAG_KINDS:
            return Flag(str(message["kind"]), str(message.get("detail", ""))[:300])
        return None
    if message[0] == "decoy":
        return Flag("decoy", f"{message[1]} bytes written on the decoy descriptor")
    return None if message[1].kind == "truncated" else Flag("tampering", str(message[1]))


def _drain_flags(worker: _Worker, flags: dict, wait: float = 0.3) -> None:
    """After a violation: keep the flags already on their way (signed flag frames, other
    tampering), so a reviewer sees everything the submission tried, not just the first."""
    end = time.monotonic() + wait
    while (message := worker.next(end - time.monotonic())) not in ("timeout", None):
        if (flag := _flag_of(message)) is not None:
            flags[flag] = None
            if flag.kind == "tampering":
                return  # nothing after a bad frame can be read


class _Violation(Exception):
    """The worker broke the protocol: no later frame of it can be trusted."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class Phase(Enum):
    """Where a worker is in the protocol: `ready` is due, then `start` or `done` between
    items, then one `result` or `error` for the running item."""
    IMPORTING = "importing"
    BETWEEN = "between"
    RUNNING = "running"


class Stop(Enum):
    """Why the engine stopped following a worker."""
    CARRY_ON = "carry on"
    """an item ended the worker (a crash, its own time limit): a new worker takes the rest"""
    IMPORT_FAILED = "import failed"
    VIOLATION = "violation"
    BUDGET = "budget"
    """the submission's whole grading time is used up"""
    DONE = "done"


def _run_worker(worker: _Worker, items: list[Item], outcomes: dict, flags: dict,
                startup_limit: float, budget_end: float, asked: Callable[[Item], bytes],
                progress: Callable[[str], None] | None = None, notes: list | None = None) -> Stop:
    """Follow one worker through its items, giving it each item's inputs (`asked`) when
    the item starts; the first worker's import notes go to `notes`. Returns why it stopped
    (Stop.CARRY_ON: a new worker should carry on with the items left)."""
    order = [i.id for i in items]
    by_id = {i.id: i for i in items}
    state, current, position = Phase.IMPORTING, None, 0
    started = time.monotonic()
    deadline = min(started + startup_limit, budget_end)

    def fail_rest(status: str, message: str, seconds: float = 0.0) -> None:
        for item_id in order[position - (current is not None):]:
            outcomes.setdefault(item_id, Failed(status, message, seconds if item_id == current else 0.0))

    try:
        while True:
            message = worker.next(deadline - time.monotonic())
            now = time.monotonic()
            if message == "timeout" and now < deadline:
                continue
            if message == "timeout":
                own_limit = state is Phase.RUNNING and now - started >= by_id[current].time_limit - 0.5
                if now >= budget_end - 0.5 and not own_limit:
                    fail_rest("timeout", "the submission used up its whole grading time",
                              now - started)
                    return Stop.BUDGET
                if state is Phase.IMPORTING:
                    fail_rest("timeout", "the submission did not finish importing within "
                              f"{startup_limit:.0f} s")
                    return Stop.BUDGET
                if state is Phase.BETWEEN:
                    raise _Violation("protocol", f"the worker stalled for {GAP_LIMIT:.0f} s between items")
                outcomes[current] = Failed("timeout", f"stopped after the item's time limit of "
                                           f"{by_id[current].time_limit:.0f} s. Hint: look for an "
                                           "endless loop or a run far longer than asked", now - started)
                return Stop.CARRY_ON if now < budget_end else Stop.BUDGET
            if message is None or (isinstance(message, tuple) and message[0] == "channel"
                                   and message[1].kind == "truncated"):
                # The process ended (or died while writing a frame).
                how = worker.exit_description()
                last = _tail_line(worker.tail)
                why = f"the grading process ended ({how})" + (f"; last output: {last}" if last else "")
                if state is Phase.IMPORTING:
                    fail_rest("crashed", why + " while importing the submission")
                    return Stop.IMPORT_FAILED
                if state is Phase.BETWEEN:
                    raise _Violation("protocol", f"the worker ended between items ({how})")
                outcomes[current] = Failed("crashed", why, now - started)
                return Stop.CARRY_ON
            if isinstance(message, tuple):
                flag = _flag_of(message)
                raise _Violation(flag.kind, flag.detail)
            kind = message.get("type")
            if kind == "flag":
                if message.get("kind") not in FLAG_KINDS:
                    raise _Violation("protocol", f"a flag of unknown kind {str(message.get('kind'))[:40]!r}")
                flags[_flag_of(message)] = None
                continue
            if state is Phase.IMPORTING and kind == "ready":
                state, deadline = Phase.BETWEEN, min(now + GAP_LIMIT, budget_end)
                said = message.get("notes")
                if notes is not None and not notes and isinstance(said, list):
                    notes.extend(str(n)[:400] for n in said[:MAX_NOTES])
            elif state is Phase.IMPORTING and kind == "import_error":
                fail_rest("error", "the module failed to import: " + str(message.get("message")))
                return Stop.IMPORT_FAILED
            elif state is Phase.BETWEEN and kind == "start" and position < len(order) \
                    and message.get("item") == order[position]:
                state, current, started = Phase.RUNNING, order[position], now
                position += 1
                worker.send_item(asked(by_id[current]))
                if progress is not None:
                    progress(current)
                deadline = min(now + by_id[current].time_limit, budget_end)
            elif state is Phase.BETWEEN and kind == "done" and position == len(order):
                return Stop.DONE
            elif state is Phase.RUNNING and kind in ("result", "error") and message.get("item") == current:
                if kind == "result":
                    outcomes[current] = Observed(message.get("observation"), now - started)
                elif message.get("tampered"):
                    flags[Flag("tampering", "changed the code of the grader's checks")] = None
                    outcomes[current] = Failed("integrity", str(message.get("message")), now - started)
                else:
                    text = str(message.get("message"))
                    if message.get("not_implemented"):
                        text = "not implemented yet: " + text
                    outcomes[current] = Failed("error", text, now - started)
                state, current, deadline = Phase.BETWEEN, None, min(now + GAP_LIMIT, budget_end)
            else:
                what = f"{kind!r}" + (f" for {message.get('item')!r}" if "item" in message else "")
                expected = {Phase.IMPORTING: "ready", Phase.BETWEEN: "the next start or done",
                            Phase.RUNNING: f"the result of {current!r}"}[state]
                raise _Violation("protocol", f"a {what} frame where {expected} was due")
    except _Violation as violation:
        flags[Flag(violation.kind, str(violation))] = None
        _drain_flags(worker, flags)
        fail_rest("integrity", f"not graded: the grading process broke the protocol ({violation})",
                  time.monotonic() - started)
        return Stop.VIOLATION
