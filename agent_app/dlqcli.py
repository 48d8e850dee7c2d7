"""`agent-app dlq list | show | replay`: the dead letters for operators, as JSON lines."""

from __future__ import annotations

import argparse
import sys

from pydantic import BaseModel
from redis.exceptions import RedisError

from agent_app import redisfaults
from agent_app.deadletters import DeadLetters
from agent_app.runtime import connect_redis
from agent_app.settings import Settings


def _emit(item: BaseModel) -> None:
    print(item.model_dump_json(), flush=True)


async def run_dlq(settings: Settings, args: argparse.Namespace) -> int:
    """0 when everything asked for was done; 1 when a task was not found or not
    replayable, or Redis failed (the reason on stderr); usage errors are argparse's 2."""
    if args.dlq_command == "replay" and bool(args.task_ids) == bool(args.all):
        print("agent-app dlq replay: name task ids or pass --all, not both", file=sys.stderr)
        return 2
    redis = connect_redis(settings)
    letters = DeadLetters(redis, settings)
    try:
        if args.dlq_command == "list":
            for letter in await letters.entries(args.tenant, args.limit):
                _emit(letter)
            return 0
        if args.dlq_command == "show":
            found = await letters.inspect(args.task_id)
            if found is None:
                print(f"agent-app dlq show: no task {args.task_id!r}", file=sys.stderr)
                return 1
            _emit(found)
            return 0
        task_ids = args.task_ids or [
            # One replay per task, however many entries it has.
            *dict.fromkeys(d.task_id for d in await letters.entries(args.tenant))
        ]
        failed = 0
        for task_id in task_ids:
            outcome = await letters.replay(task_id)
            _emit(outcome)
            failed += not outcome.replayed
        return 1 if failed else 0
    except RedisError as exc:
        print(f"agent-app dlq: {redisfaults.describe(exc)}", file=sys.stderr)
        return 1
    finally:
        await redis.aclose()
